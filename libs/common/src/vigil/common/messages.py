"""Message contracts that cross NATS. Versioned by the `Vigil-Schema` header.

Every model is frozen and forbids unknown fields; new fields must be optional so that a
consumer one release behind keeps working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from vigil.common.alertmanager import AlertStatus, WebhookAlert, WebhookPayload

StepKind = Literal["cli", "condition", "wait", "notify", "agent"]
StepOutcome = Literal["succeeded", "failed", "timed_out", "cancelled"]
ExecutionState = Literal["pending", "running", "succeeded", "failed", "cancelled", "timed_out"]

Output = dict[str, JsonValue]

# Stored and read under their field names, shown by the API in camelCase (`by_alias=True`).
# Serialization aliases only: reading a stored document looks up one name per field.
SHOWN_IN_CAMEL_CASE = ConfigDict(
    frozen=True, extra="forbid", alias_generator=AliasGenerator(serialization_alias=to_camel)
)


class Contract(BaseModel):
    """Base of our own wire contracts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]


class Alert(Contract):
    """One alert as Vigil carries it; field names follow Alertmanager's JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    status: AlertStatus
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")

    @classmethod
    def from_webhook(cls, item: WebhookAlert) -> Alert:
        return cls(
            status=item.status,
            fingerprint=item.identity(),
            labels=item.labels,
            annotations=item.annotations,
            starts_at=item.starts_at,
            ends_at=item.ends_at,
            generator_url=item.generator_url,
        )


class Group(Contract):
    """The Alertmanager group the alert arrived in (kept: peers throw it away)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    key: str = ""
    status: AlertStatus | None = None
    receiver: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")

    @classmethod
    def from_webhook(cls, payload: WebhookPayload) -> Group:
        return cls(
            key=payload.group_key,
            status=payload.status,
            receiver=payload.receiver,
            labels=payload.group_labels,
            common_labels=payload.common_labels,
            common_annotations=payload.common_annotations,
            external_url=payload.external_url,
        )


class AlertReceived(Contract):
    """`vigil.alerts.{ns}.{source}`: one alert occurrence accepted by ingest."""

    schema_name: ClassVar[str] = "alert.v1"

    namespace: str
    source: str
    received_at: datetime
    alert: Alert
    group: Group = Field(default_factory=Group)

    @property
    def occurrence_id(self) -> str:
        """The stream's deduplication id (`Nats-Msg-Id`) of this occurrence: whoever
        publishes it (ingest for webhooks, the engine for schedules) uses this one."""
        alert = self.alert
        return (
            f"{self.namespace}/{self.source}/{alert.fingerprint}/{alert.status}"
            f"/{alert.starts_at.isoformat()}"
        )


class CliStep(Contract):
    argv: list[str] = Field(min_length=1)
    timeout_seconds: float
    env: dict[str, str] = Field(default_factory=dict)
    # Kubernetes mode only; a local runner ignores them.
    image: str | None = None
    resources: dict[str, dict[str, str]] = Field(default_factory=dict)  # requests, limits
    service_account: str | None = None


class AgentStep(Contract):
    """An investigation: the rendered goal, the tools it may use (empty: every configured
    read-only tool) and its budgets."""

    goal: str = Field(min_length=1)
    tools: list[str] = Field(default_factory=list)
    max_iterations: int = Field(default=8, ge=1)
    max_tokens: int = Field(default=32_000, ge=1)
    timeout_seconds: float = Field(gt=0)
    model: str | None = None  # overrides the configured model id of the provider used
    provider: str | None = None  # "openai" or "anthropic": use this provider only
    runbook_url: str | None = None  # the alert's `runbook_url` annotation
    output_schema: dict[str, Any] | None = None  # fields the answer adds (a JSON Schema)


class Findings(Contract):
    """What an agent step found, as a notification shows it (bounded by the engine)."""

    summary: str = ""
    root_cause: str = ""
    recommendations: list[str] = Field(default_factory=list)
    confidence: float | None = None


class StepSummary(Contract):
    """One step of the execution so far, for the sink's default report."""

    name: str
    kind: str
    state: str
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    findings: Findings | None = None  # agent steps that answered

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


class NotifyStep(Contract):
    """A notify step rendered for the sink.

    `title` and `message` are always rendered (the step's templates, else the defaults);
    `custom_title`/`custom_message` say the step wrote its own, which then replaces the
    default report's title/text. `steps` (the other steps of the execution, in order) and
    `trace_id` feed the default report; a sink one release behind ignores them.
    """

    sinks: list[str] = Field(min_length=1)
    title: str
    message: str
    alert: Alert
    # Read by no sink since the default report builds its own links from the sink's
    # settings; kept so a step request from an earlier engine still validates.
    execution_url: str = ""
    custom_title: bool = False
    custom_message: bool = False
    steps: list[StepSummary] = Field(default_factory=list)
    trace_id: str | None = None


class StepRequest(Contract):
    """`vigil.steps.{kind}`: the engine asks a worker to run one attempt of one step."""

    schema_name: ClassVar[str] = "step.v1"

    execution_id: str
    namespace: str
    workflow: str
    step: str
    attempt: int = Field(ge=1)
    idempotency_key: str
    cli: CliStep | None = None
    notify: NotifyStep | None = None
    agent: AgentStep | None = None

    @property
    def kind(self) -> Literal["cli", "notify", "agent"]:
        if self.cli is not None:
            return "cli"
        return "agent" if self.agent is not None else "notify"


class StepResult(Contract):
    """`vigil.results`: what one attempt of one step did."""

    schema_name: ClassVar[str] = "result.v1"

    execution_id: str
    step: str
    attempt: int
    outcome: StepOutcome
    output: Output | None = None
    error: str | None = None
    started_at: datetime
    finished_at: datetime


class ExecutionEvent(Contract):
    """`vigil.events.{ns}.{workflow}`: an execution changed state."""

    schema_name: ClassVar[str] = "event.v1"

    execution_id: str
    namespace: str
    workflow: str
    state: ExecutionState
    at: datetime
    error: str | None = None


class DeadLetter(Contract):
    """`vigil.dlq.{stream}.{consumer}`: a message that exhausted its deliveries."""

    schema_name: ClassVar[str] = "dlq.v1"

    stream: str
    consumer: str
    subject: str
    deliveries: int
    reason: str
    headers: dict[str, str] = Field(default_factory=dict)
    data: str


class CancelRequested(Contract):
    """`vigil.control.cancel`: an operator asked to cancel an execution (API)."""

    schema_name: ClassVar[str] = "cancel.v1"

    execution_id: str
    reason: str
    requested_at: datetime


class RunRequested(Contract):
    """`vigil.control.run`: an operator started a workflow by hand with this alert (API)."""

    schema_name: ClassVar[str] = "run.v1"

    execution_id: str
    namespace: str
    workflow: str
    alert: Alert
    group: Group = Field(default_factory=Group)
    requested_at: datetime


class StepCancelled(Contract):
    """`vigil.cancel.{execution}` (core NATS, not stored): stop this attempt if you run it."""

    schema_name: ClassVar[str] = "step-cancel.v1"

    execution_id: str
    step: str
    attempt: int
