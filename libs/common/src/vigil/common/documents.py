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
from vigil.common.messages import Alert, ExecutionState, Group, Output

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
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepRecord(Document):
    name: str
    kind: str
    state: StepState = "pending"
    attempt: int = 0
    on_failure: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: Output | None = None
    error: str | None = None


class Execution(Document):
    id: str
    namespace: str
    workflow: str
    workflow_generation: int = 1
    source: str
    trigger_key: str
    concurrency_key: str
    alert: Alert
    group: Group = Field(default_factory=Group)
    state: ExecutionState = "pending"
    version: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    wake_at: datetime | None = None
    error: str | None = None
    steps: list[StepRecord]
    trace_id: str | None = None

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


class ExecutionFilter(Document):
    namespace: str | None = None
    workflow: str | None = None
    state: ExecutionState | None = None


class ExecutionPage(Document):
    items: list[Execution]
    next: str | None = None
