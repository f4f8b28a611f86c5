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
