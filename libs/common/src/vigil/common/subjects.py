"""Subject and stream names: the only place where NATS subjects are spelled.

Names that become subject tokens (namespaces, source and workflow names) are Kubernetes
DNS labels, validated by the resource models, so they never contain `.`, `*` or `>`.
"""

from __future__ import annotations

import re

ALERTS_STREAM = "ALERTS"
STEPS_STREAM = "STEPS"
RESULTS_STREAM = "RESULTS"
EVENTS_STREAM = "EVENTS"
DLQ_STREAM = "DLQ"
CONTROL_STREAM = "CONTROL"

CONFIG_BUCKET = "vigil-config"

_TOKEN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        msg = f"{what} {value!r} is not a DNS label (lower-case letters, digits and '-')"
        raise ValueError(msg)
    return value


def alerts(namespace: str, source: str) -> str:
    return f"vigil.alerts.{_token(namespace, 'namespace')}.{_token(source, 'source')}"


def all_alerts() -> str:
    return "vigil.alerts.>"


def steps(kind: str) -> str:
    return f"vigil.steps.{_token(kind, 'step kind')}"


def all_steps() -> str:
    return "vigil.steps.>"


def results() -> str:
    return "vigil.results"


def events(namespace: str, workflow: str) -> str:
    return f"vigil.events.{_token(namespace, 'namespace')}.{_token(workflow, 'workflow')}"


def all_events() -> str:
    return "vigil.events.>"


def dlq(stream: str, consumer: str) -> str:
    return f"vigil.dlq.{stream.lower()}.{consumer}"


def all_dlq() -> str:
    return "vigil.dlq.>"


def control(command: str) -> str:
    """Operator commands from the API to the engine (`cancel`, `run`)."""
    return f"vigil.control.{_token(command, 'command')}"


def all_control() -> str:
    return "vigil.control.>"


def step_cancellations(execution_id: str | None = None) -> str:
    """Core NATS (not a stream): tell workers to stop an attempt; `None` = all of them."""
    return "vigil.cancel.>" if execution_id is None else f"vigil.cancel.{execution_id}"
