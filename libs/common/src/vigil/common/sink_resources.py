"""The `spec` of a Sink (group `vigil.dev/v1alpha1`): one block per sink type, with the
checks the controller makes and the CEL rules the API server makes (DESIGN §12)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from vigil.common.resource_base import Duration, SecretKeyRef, Spec, cel_rules

# --- Sink ---------------------------------------------------------------------------------


class WebhookSinkSpec(Spec):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra=cel_rules(
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
        json_schema_extra=cel_rules(
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
        json_schema_extra=cel_rules(
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
        json_schema_extra=cel_rules(
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
