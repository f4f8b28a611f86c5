"""The variables templates and CEL see: alert, group, steps, execution, workflow.

Plain JSON-like dicts (timestamps as RFC 3339 strings) so both Jinja2 and CEL read them
the same way. Every step of the workflow is present from the start, output null until set.
"""

from __future__ import annotations

from typing import Any

from vigil.common.documents import Execution
from vigil.common.messages import Alert, AlertReceived, Group
from vigil.common.resources import Workflow


def _alert(alert: Alert) -> dict[str, Any]:
    return alert.model_dump(mode="json", by_alias=True)


def _group(group: Group) -> dict[str, Any]:
    return group.model_dump(mode="json", by_alias=True)


def _workflow(workflow: Workflow) -> dict[str, Any]:
    meta = workflow.metadata
    return {"name": meta.name, "namespace": meta.namespace, "labels": dict(meta.labels)}


def alert_context(received: AlertReceived, workflow: Workflow) -> dict[str, Any]:
    """Context for trigger filters: no execution exists yet."""
    return {
        "alert": _alert(received.alert),
        "group": _group(received.group),
        "workflow": _workflow(workflow),
        "steps": {},
        "execution": {},
    }


def execution_context(execution: Execution, workflow: Workflow) -> dict[str, Any]:
    return {
        "alert": _alert(execution.alert),
        "group": _group(execution.group),
        "workflow": _workflow(workflow),
        "steps": {
            step.name: {"state": step.state, "output": step.output, "error": step.error}
            for step in execution.steps
        },
        "execution": {
            "id": execution.id,
            "error": execution.error,
            "startedAt": execution.created_at.isoformat(),
            "state": execution.state,
        },
    }
