"""The resources of group `vigil.dev/v1alpha1`: Source, Workflow, Sink (DESIGN §4).

These models are the single definition of the schema: the controller validates YAML with
them, and the CRDs in `crds/` are generated from them (`vigil.common.crds`, `make crds`).
Structural checks live here, each model validator beside the CEL rule
(`x-kubernetes-validations`) that lets the API server make the same check; compiling
templates and CEL and resolving references is the controller's job
(`vigil.common.validation`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from vigil.common.alertmanager import AlertStatus
from vigil.common.cron import CatchUp, cron_fields, time_zone
from vigil.common.resource_base import (
    MAX_STEPS,
    YAML11_ON,
    BasicAuthSecretRef,
    DnsLabel,
    Duration,
    Metadata,
    SecretKeyRef,
    Spec,
    StepName,
    cel_rules,
)
from vigil.common.sink_resources import SinkSpec

# --- Source -------------------------------------------------------------------------------


class HmacAuth(Spec):
    """An HMAC-SHA256 signature of the raw body in a header (GitHub, Grafana, most SaaS).

    The header holds `prefix` + the lower- or upper-case hex digest. With `timestampHeader`
    the signed text is `<timestamp>:<body>` (Grafana's form) and a timestamp further than
    `maxSkew` from now is refused (a replayed request).
    """

    secret_ref: SecretKeyRef = Field(alias="secretRef")
    header: str = Field(min_length=1)
    prefix: str = ""
    timestamp_header: str | None = Field(default=None, alias="timestampHeader", min_length=1)
    max_skew: Duration = Field(default="5m", alias="maxSkew")


class SourceAuth(Spec):
    bearer_token_secret_ref: SecretKeyRef | None = Field(default=None, alias="bearerTokenSecretRef")
    basic_auth_secret_ref: BasicAuthSecretRef | None = Field(
        default=None, alias="basicAuthSecretRef"
    )
    hmac: HmacAuth | None = None


class WebhookMapping(Spec):
    """How a `webhook` Source reads alerts out of any JSON body: every value is CEL.

    `items` sees `body` and yields the list of items (default: the body is the one item);
    every other field sees `body` and `item`. `labelsFrom`/`annotationsFrom` yield a whole
    map of strings, which `labels`/`annotations` (name → CEL giving a string) extend and
    override. `status` yields "firing" or "resolved" (default firing), `fingerprint` a
    string (default: the labels' Alertmanager fingerprint), `startsAt` an RFC 3339 string,
    a timestamp or Unix seconds (default: when the body was received).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=cel_rules(
            (
                "(has(self.labels) && size(self.labels) > 0) || has(self.labelsFrom)",
                "webhook mapping needs `labels` or `labelsFrom`: an alert is known by its labels",
            )
        ),
    )

    items: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    labels_from: str | None = Field(default=None, alias="labelsFrom")
    annotations: dict[str, str] = Field(default_factory=dict)
    annotations_from: str | None = Field(default=None, alias="annotationsFrom")
    status: str | None = None
    fingerprint: str | None = None
    starts_at: str | None = Field(default=None, alias="startsAt")

    @model_validator(mode="after")
    def _has_labels(self) -> WebhookMapping:
        if not self.labels and self.labels_from is None:
            msg = "webhook mapping needs `labels` or `labelsFrom`: an alert is known by its labels"
            raise ValueError(msg)
        return self

    def expressions(self) -> dict[str, str]:
        """Every CEL expression of the mapping but `items`, by the field that holds it."""
        found = {
            "labelsFrom": self.labels_from,
            "annotationsFrom": self.annotations_from,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "startsAt": self.starts_at,
        }
        named = {field: source for field, source in found.items() if source is not None}
        named.update({f"labels.{name}": source for name, source in self.labels.items()})
        named.update({f"annotations.{name}": source for name, source in self.annotations.items()})
        return named


def _cron(value: str) -> str:
    cron_fields(value)
    return value


def _time_zone(value: str) -> str:
    time_zone(value)
    return value


CronExpression = Annotated[
    str, AfterValidator(_cron), WithJsonSchema({"type": "string", "minLength": 1})
]
TimeZoneName = Annotated[
    str, AfterValidator(_time_zone), WithJsonSchema({"type": "string", "minLength": 1})
]


# `catchUp` says what a tick missed while no engine ran does: `one` fires the latest missed
# tick once, `none` skips it (`vigil.common.cron`).
class ScheduleSpec(Spec):
    """A synthetic alert fired at each tick of `cron` (5 fields or @daily etc.) in `timeZone`."""

    cron: CronExpression
    time_zone: TimeZoneName = Field(default="UTC", alias="timeZone")
    catch_up: CatchUp = Field(default="one", alias="catchUp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SourceSpec(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=cel_rules(
            (
                "self.type != 'webhook' || has(self.webhook)",
                "type webhook needs a `webhook` mapping block",
            ),
            (
                "self.type != 'schedule' || has(self.schedule)",
                "type schedule needs a `schedule` block",
            ),
        ),
    )

    type: Literal["alertmanager", "webhook", "schedule"]
    auth: SourceAuth | None = None
    webhook: WebhookMapping | None = None
    schedule: ScheduleSpec | None = None

    @model_validator(mode="after")
    def _type_has_its_block(self) -> SourceSpec:
        if self.type == "webhook" and self.webhook is None:
            raise ValueError("type webhook needs a `webhook` mapping block")
        if self.type == "schedule" and self.schedule is None:
            raise ValueError("type schedule needs a `schedule` block")
        return self


# --- Workflow -----------------------------------------------------------------------------


def _firing_only() -> list[AlertStatus]:
    return ["firing"]


class Trigger(Spec):
    sources: list[DnsLabel] | None = None
    matchers: list[str] = Field(default_factory=list)
    filter: str | None = None
    # kubectl reads YAML as YAML 1.1, where an unquoted `on` key is the boolean true: what
    # `on: [firing]` becomes on its way to the API server is `"true": [firing]`.
    on: list[AlertStatus] = Field(
        default_factory=_firing_only,
        min_length=1,
        validation_alias=AliasChoices("on", YAML11_ON),
    )


class Concurrency(Spec):
    key: str | None = None
    policy: Literal["Allow", "Forbid", "Replace"] = "Allow"


class Retry(Spec):
    attempts: int = Field(default=1, ge=1, le=20)
    backoff: Duration = "10s"


class ComputeResources(Spec):
    """Kubernetes mode: the step pod's container resources (quantities such as `100m`)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class CliSpec(Spec):
    command: list[str] = Field(min_length=1)
    timeout: Duration | None = None
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None  # Kubernetes mode: the step pod's image (default: the agent image)
    resources: ComputeResources | None = None


class WaitSpec(Spec):
    duration: Duration
    until: str | None = None


class NotifySpec(Spec):
    sinks: list[DnsLabel] = Field(min_length=1)
    title: str | None = None
    message: str | None = None


AGENT_TOOLS = ("kubernetes", "logs", "prometheus", "http_get", "runbook", "dns", "tcp_check")


class AgentSpec(Spec):
    goal: str
    tools: list[str] = Field(default_factory=list)  # empty: every configured tool
    max_iterations: int = Field(default=8, alias="maxIterations", ge=1, le=50)
    max_tokens: int = Field(default=32_000, alias="maxTokens", ge=1)
    timeout: Duration | None = None
    model: str | None = None  # replaces the configured model id
    provider: Literal["openai", "anthropic"] | None = None  # use this provider only
    # A JSON Schema (type object) of fields the answer carries beside the finding's own.
    output_schema: dict[str, Any] | None = Field(
        default=None,
        alias="outputSchema",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


StepKindName = Literal["cli", "condition", "wait", "notify", "agent"]


_STEP_KINDS_RULE = (
    "[has(self.cli), has(self.condition), has(self.wait), has(self.notify), has(self.agent)]"
    ".filter(k, k).size() == 1"
)


class Step(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=cel_rules(
            (
                _STEP_KINDS_RULE,
                "a step must have exactly one of cli, condition, wait, notify, agent",
            )
        ),
    )

    name: StepName
    when: str | None = None
    timeout: Duration | None = None
    retry: Retry | None = None
    continue_on_error: bool = Field(default=False, alias="continueOnError")
    cli: CliSpec | None = None
    condition: str | None = None
    wait: WaitSpec | None = None
    notify: NotifySpec | None = None
    agent: AgentSpec | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in ("cli", "condition", "wait", "notify", "agent") if getattr(self, k)]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            msg = (
                f"step {self.name!r} must have exactly one of cli, condition, wait, notify, "
                f"agent (found: {found})"
            )
            raise ValueError(msg)
        return self

    @property
    def kind(self) -> StepKindName:
        for kind in ("cli", "condition", "wait", "notify", "agent"):
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("validated step has a kind")


_UNIQUE_STEP_NAMES_RULE = (
    "(has(self.onFailure) ? self.steps + self.onFailure : self.steps)"
    ".all(s, (has(self.onFailure) ? self.steps + self.onFailure : self.steps)"
    ".exists_one(t, t.name == s.name))"
)


class WorkflowSpec(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=cel_rules((_UNIQUE_STEP_NAMES_RULE, "step names must be unique")),
    )

    trigger: Trigger = Field(default_factory=Trigger)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    cooldown: Duration | None = None
    timeout: Duration | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    on_failure: list[Step] = Field(default_factory=list, alias="onFailure", max_length=MAX_STEPS)
    # Kubernetes mode: the service account the workflow's step pods run as.
    service_account_name: DnsLabel | None = Field(default=None, alias="serviceAccountName")

    @model_validator(mode="after")
    def _unique_step_names(self) -> WorkflowSpec:
        seen: set[str] = set()
        for step in [*self.steps, *self.on_failure]:
            if step.name in seen:
                msg = f"step name {step.name!r} is used twice"
                raise ValueError(msg)
            seen.add(step.name)
        return self


# --- Status (written by the controller in Kubernetes mode) ---------------------------------


class Condition(Spec):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class LastExecution(Spec):
    id: str
    state: str
    time: datetime


class ResourceStatus(Spec):
    """`status` of the three kinds; each kind fills what concerns it."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    webhook_path: str | None = Field(default=None, alias="webhookPath")  # Source
    # A ready schedule Source: its cron's next tick after the controller's clock.
    next_fire_at: datetime | None = Field(default=None, alias="nextFireAt")
    trigger: str | None = None  # Workflow: a one-line summary of its trigger
    last_execution: LastExecution | None = Field(default=None, alias="lastExecution")
    executions: dict[str, int] = Field(default_factory=dict)  # Workflow: finished, by state


# --- Envelopes ----------------------------------------------------------------------------


class Resource(Spec):
    api_version: Literal["vigil.dev/v1alpha1"] = Field(alias="apiVersion")
    metadata: Metadata

    @property
    def ref(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


class Source(Resource):
    kind: Literal["Source"]
    spec: SourceSpec


class Workflow(Resource):
    kind: Literal["Workflow"]
    spec: WorkflowSpec


class Sink(Resource):
    kind: Literal["Sink"]
    spec: SinkSpec


AnyResource = Annotated[Source | Workflow | Sink, Field(discriminator="kind")]
KINDS = ("Source", "Workflow", "Sink")
