"""Executions per Workflow, from the `EVENTS` stream to each Workflow's `status` (pure).

Every lifecycle event is recorded here as it comes; the controller takes what gathered
every few seconds and writes each Workflow's status once (`lastExecution`, and finished
executions counted by state), so a workflow that runs a hundred times a second costs one
status patch per interval, not a hundred.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vigil.common.documents import FINAL_EXECUTION_STATES
from vigil.common.messages import ExecutionEvent

type WorkflowKey = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)
class Runs:
    """What happened to one workflow's executions since the last write."""

    last: ExecutionEvent | None = None
    finished: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Tally:
    pending: dict[WorkflowKey, Runs] = field(default_factory=dict)

    def record(self, event: ExecutionEvent) -> None:
        runs = self.pending.setdefault((event.namespace, event.workflow), Runs())
        if runs.last is None or event.at >= runs.last.at:
            runs.last = event
        if event.state in FINAL_EXECUTION_STATES:
            runs.finished[event.state] += 1

    def restore(self, key: WorkflowKey, runs: Runs) -> None:
        """Put back what could not be written, under what gathered since."""
        pending = self.pending.setdefault(key, Runs())
        pending.finished.update(runs.finished)
        if runs.last is not None and (pending.last is None or runs.last.at > pending.last.at):
            pending.last = runs.last

    def take(self) -> dict[WorkflowKey, Runs]:
        """What gathered since the last call; the tally starts empty again."""
        taken, self.pending = self.pending, {}
        return taken


def status_patch(runs: Runs, current: dict[str, Any]) -> dict[str, Any]:
    """The merge patch of a Workflow's status: counters added to what it shows."""
    counts = dict(current.get("executions") or {})
    for state, number in runs.finished.items():
        counts[state] = int(counts.get(state, 0)) + number
    patch: dict[str, Any] = {"executions": counts}
    if runs.last is not None and _is_newer(runs.last.at, current.get("lastExecution")):
        patch["lastExecution"] = {
            "id": runs.last.execution_id,
            "state": runs.last.state,
            "time": runs.last.at.isoformat().replace("+00:00", "Z"),
        }
    return patch


def _is_newer(at: datetime, shown: Any) -> bool:
    if not isinstance(shown, dict) or not shown.get("time"):
        return True
    try:
        previous = datetime.fromisoformat(str(shown["time"]).replace("Z", "+00:00"))
    except ValueError:
        return True
    return at >= previous
