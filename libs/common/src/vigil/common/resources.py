"""The resources of group `vigil.dev/v1alpha1`: Source, Workflow, Sink (DESIGN §4).

These models are the single definition of the schema: the controller validates YAML with
them, and the CRDs in `crds/` are generated from them (`vigil.common.crds`, `make crds`).
Structural checks live here, each model validator beside the CEL rule
(`x-kubernetes-validations`) that lets the API server make the same check; compiling
templates and CEL and resolving references is the controller's job
(`vigil.common.validation`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from vigil.common.alertmanager import AlertStatus
from vigil.common.cron import CatchUp, cron_fields, time_zone
from vigil.common.durations import parse_duration

API_VERSION = "vigil.dev/v1alpha1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The same rules for the API server (OpenAPI patterns are ECMA-262 regular expressions).
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+\s*$"
MAX_STEPS = 64
YAML11_ON = "true"  # the key `on` as YAML 1.1 parsers (kubectl's) read it


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        msg = f"{value!r} is not a DNS label (at most 63 lower-case letters, digits and '-')"
        raise ValueError(msg)
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _step_name(value: str) -> str:
    if not _STEP_NAME.match(value):
        msg = (
            f"step name {value!r} must be an identifier (letters, digits, '_'), "
            "so that `steps.<name>` works in templates and CEL"
        )
        raise ValueError(msg)
    return value


DnsLabel = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL.pattern, "maxLength": 63}),
]
Duration = Annotated[
    str, AfterValidator(_duration), WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
]
StepName = Annotated[
    str,
    AfterValidator(_step_name),
    WithJsonSchema({"type": "string", "pattern": _STEP_NAME.pattern, "maxLength": 63}),
]


def _rules(*rules: tuple[str, str]) -> dict[str, JsonValue]:
    """CEL rules the API server checks (`x-kubernetes-validations`): (rule, message)."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Metadata(Spec):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    name: DnsLabel
    namespace: DnsLabel = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    generation: int = 1


class SecretKeyRef(Spec):
    name: DnsLabel
    key: str = Field(min_length=1)


class BasicAuthSecretRef(Spec):
    name: DnsLabel
    username_key: str = Field(alias="usernameKey", min_length=1)
    password_key: str = Field(alias="passwordKey", min_length=1)


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
        json_schema_extra=_rules(
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
        json_schema_extra=_rules(
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
        json_schema_extra=_rules(
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
        json_schema_extra=_rules((_UNIQUE_STEP_NAMES_RULE, "step names must be unique")),
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


# --- Sink ---------------------------------------------------------------------------------


class WebhookSinkSpec(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=_rules(
            (
                "has(self.url) != has(self.urlSecretRef)",
                "webhook sink needs exactly one of `url` and `urlSecretRef`",
            )
        ),
    )

    url: str | None = None
    url_secret_ref: SecretKeyRef | None = Field(default=None, alias="urlSecretRef")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = "10s"
    # HMAC-SHA256 over `{timestamp}.{body}` in `X-Vigil-Signature: t=<unix>,v1=<hex>`.
    signing_secret_ref: SecretKeyRef | None = Field(default=None, alias="signingSecretRef")

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSinkSpec:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("webhook sink needs exactly one of `url` and `urlSecretRef`")
        return self


class SlackSinkSpec(Spec):
    """An incoming webhook (`webhookUrlSecretRef`), or a bot token and a channel
    (`chat.postMessage`): exactly one of the two ways."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=_rules(
            (
                "has(self.webhookUrlSecretRef) != has(self.tokenSecretRef)",
                "slack sink needs exactly one of `webhookUrlSecretRef` and `tokenSecretRef`",
            ),
            (
                "has(self.tokenSecretRef) == has(self.channel)",
                "slack sink needs `channel` with `tokenSecretRef` (and only with it)",
            ),
        ),
    )

    webhook_url_secret_ref: SecretKeyRef | None = Field(default=None, alias="webhookUrlSecretRef")
    token_secret_ref: SecretKeyRef | None = Field(default=None, alias="tokenSecretRef")
    channel: str | None = Field(default=None, min_length=1)  # an id (C0123…) or #name
    timeout: Duration = "10s"

    @model_validator(mode="after")
    def _one_way(self) -> SlackSinkSpec:
        if (self.webhook_url_secret_ref is None) == (self.token_secret_ref is None):
            msg = "slack sink needs exactly one of `webhookUrlSecretRef` and `tokenSecretRef`"
            raise ValueError(msg)
        if (self.token_secret_ref is None) != (self.channel is None):
            msg = "slack sink needs `channel` with `tokenSecretRef` (and only with it)"
            raise ValueError(msg)
        return self


class MsTeamsSinkSpec(Spec):
    """A Teams workflow (Power Automate) webhook, its URL in a Secret."""

    webhook_url_secret_ref: SecretKeyRef = Field(alias="webhookUrlSecretRef")
    timeout: Duration = "10s"


class PagerDutySinkSpec(Spec):
    """PagerDuty Events API v2: the integration's routing key is kept in a Secret."""

    routing_key_secret_ref: SecretKeyRef = Field(alias="routingKeySecretRef")
    url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", pattern=r"^https?://[^\s]+$"
    )
    source: str = Field(default="", max_length=255)  # default: the alert's instance/job label
    timeout: Duration = "10s"


def _address(value: str) -> str:
    # One bare address: a line break or a comma here would add headers or recipients.
    if not re.fullmatch(r"[^@\s,<>\"]+@[^@\s,<>\"]+", value):
        msg = f"{value!r} is not an email address (one bare address like oncall@example.com)"
        raise ValueError(msg)
    return value


EmailAddress = Annotated[
    str,
    AfterValidator(_address),
    WithJsonSchema({"type": "string", "pattern": r"^[^@\s,<>\"]+@[^@\s,<>\"]+$"}),
]


class EmailSinkSpec(Spec):
    """SMTP: `starttls` (submission, 587), `tls` (implicit, 465) or `none` (a local relay)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=_rules(
            (
                "has(self.username) == has(self.passwordSecretRef)",
                "email sink needs both `username` and `passwordSecretRef`, or neither",
            )
        ),
    )

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "tls", "none"] = "starttls"
    from_: EmailAddress = Field(alias="from")
    to: list[EmailAddress] = Field(min_length=1)
    cc: list[EmailAddress] = Field(default_factory=list)
    username: str | None = None
    password_secret_ref: SecretKeyRef | None = Field(default=None, alias="passwordSecretRef")
    timeout: Duration = "30s"

    @model_validator(mode="after")
    def _both_or_neither(self) -> EmailSinkSpec:
        if (self.username is None) != (self.password_secret_ref is None):
            msg = "email sink needs both `username` and `passwordSecretRef`, or neither"
            raise ValueError(msg)
        return self


class RateLimit(Spec):
    """A token bucket per sink: `burst` deliveries at once, refilled at `perMinute`."""

    per_minute: int = Field(alias="perMinute", ge=1)
    burst: int = Field(default=1, ge=1)


class SinkSpec(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=_rules(
            ("self.type != 'webhook' || has(self.webhook)", "type webhook needs a `webhook` block"),
            ("self.type != 'slack' || has(self.slack)", "type slack needs a `slack` block"),
            (
                "self.type != 'msteams' || has(self.msteams)",
                "type msteams needs a `msteams` block",
            ),
            (
                "self.type != 'pagerduty' || has(self.pagerduty)",
                "type pagerduty needs a `pagerduty` block",
            ),
            ("self.type != 'email' || has(self.email)", "type email needs an `email` block"),
        ),
    )

    type: Literal["slack", "msteams", "pagerduty", "email", "webhook", "log"]
    webhook: WebhookSinkSpec | None = None
    slack: SlackSinkSpec | None = None
    msteams: MsTeamsSinkSpec | None = None
    pagerduty: PagerDutySinkSpec | None = None
    email: EmailSinkSpec | None = None
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")

    @model_validator(mode="after")
    def _type_has_its_block(self) -> SinkSpec:
        if (
            self.type in ("webhook", "slack", "msteams", "pagerduty", "email")
            and getattr(self, self.type) is None
        ):
            article = "an" if self.type == "email" else "a"
            msg = f"type {self.type} needs {article} `{self.type}` block"
            raise ValueError(msg)
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
