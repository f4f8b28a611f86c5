"""Documents of the store (DESIGN §5): executions and alerts.

Pydantic models because they cross the store boundary (SQLite JSON, MongoDB BSON) and the
HTTP API. They are frozen: the engine derives a new version with `model_copy(update=…)`
and writes it with compare-and-set on `version`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vigil.common.alertmanager import AlertStatus
from vigil.common.messages import SHOWN_IN_CAMEL_CASE, Alert, ExecutionState, Group, Output

StepState = Literal[
    "pending", "running", "succeeded", "failed", "skipped", "cancelled", "timed_out"
]
FINAL_EXECUTION_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "timed_out"}
)
FINAL_STEP_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "skipped", "cancelled", "timed_out"}
)
OUTPUT_LIMIT_BYTES = 64 * 1024


class Document(BaseModel):
    # A stored document may come from a newer release (a rolling upgrade, a rollback): the
    # fields this one does not know are kept, and written back as they were, not refused.
    model_config = ConfigDict(**{**SHOWN_IN_CAMEL_CASE, "extra": "allow"})


class StepRecord(Document):
    name: str
    kind: str
    state: StepState = "pending"
    attempt: int = 0
    on_failure: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # A running step's deadline (its timeout, or a wait's end); a pending step's retry time.
    deadline_at: datetime | None = None
    not_before: datetime | None = None
    output: Output | None = None
    error: str | None = None


class Execution(Document):
    id: str
    namespace: str
    workflow: str
    workflow_generation: int = 1
    source: str
    alert_id: str = ""
    trigger_key: str
    concurrency_key: str
    # Set while unfinished under a Forbid/Replace policy: unique in the store, so two
    # engine replicas cannot both start an execution for the same concurrency key.
    exclusive_key: str | None = None
    alert: Alert
    group: Group = Field(default_factory=Group)
    state: ExecutionState = "pending"
    version: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    wake_at: datetime | None = None
    deadline_at: datetime | None = None  # the workflow timeout
    expire_at: datetime | None = None
    error: str | None = None
    steps: list[StepRecord]
    trace_id: str | None = None
    # The W3C `traceparent` of the span that admitted it: later work on the execution
    # (a timer's wake-up, a redelivery, batched results) joins the alert's trace there.
    trace_parent: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_EXECUTION_STATES

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        msg = f"execution {self.id} has no step {name!r}"
        raise KeyError(msg)


class StatusChange(Document):
    status: AlertStatus
    at: datetime


class AlertRecord(Document):
    id: str
    namespace: str
    source: str
    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    first_seen: datetime
    last_seen: datetime
    occurrences: int = 1
    history: list[StatusChange] = Field(default_factory=list)
    expire_at: datetime | None = None


def alert_id(namespace: str, source: str, fingerprint: str) -> str:
    """The identity of an alert's history document: one per (namespace, source, fingerprint)."""
    return f"{namespace}/{source}/{fingerprint}"


class AlertFilter(Document):
    namespace: str | None = None
    source: str | None = None
    status: AlertStatus | None = None
    # Alertmanager matchers over labels, e.g. 'severity=~"critical|warning"'.
    matchers: list[str] = Field(default_factory=list)


class AlertPage(Document):
    items: list[AlertRecord]
    next: str | None = None


class Artifact(Document):
    """A large output kept beside an execution (full logs, transcripts)."""

    id: str
    execution_id: str
    step: str
    kind: str
    content_type: str = "text/plain"
    content: str
    truncated: bool = False
    created_at: datetime
    expire_at: datetime | None = None


class DeliveryRecord(Document):
    """One attempt to deliver a notification to one sink."""

    id: str
    idempotency_key: str
    execution_id: str
    step: str
    sink: str
    sink_type: str
    attempt: int
    status: Literal["delivered", "failed", "retrying"]
    detail: str | None = None
    at: datetime
    expire_at: datetime | None = None


class ExecutionFilter(Document):
    namespace: str | None = None
    workflow: str | None = None
    state: ExecutionState | None = None
    alert_id: str | None = None
    concurrency_key: str | None = None
    active: bool | None = None  # True: pending or running; False: finished


class ExecutionPage(Document):
    items: list[Execution]
    next: str | None = None
