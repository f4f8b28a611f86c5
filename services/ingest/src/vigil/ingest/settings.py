"""Ingest settings (env prefix VIGIL_INGEST_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.common.adapters.http_limits import HttpLimits
from vigil.common.settings import (
    TRACE_URL_DESCRIPTION,
    TRACE_URL_ENV,
    SecretSettings,
    checked_trace_url,
    is_loopback,
)
from vigil.ingest.alert_limits import AlertLimits


class IngestSettings(SecretSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore", frozen=True)

    http_host: str = Field(
        default="127.0.0.1",
        description="Bind address of webhooks and the API; another than loopback needs auth.",
    )
    http_port: int = Field(default=8080, description="Port of webhooks, the API and /healthz.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Largest webhook body accepted, in bytes."
    )
    max_label_bytes: int = Field(
        default=16 * 1024,
        gt=0,
        description="Largest label or annotation of an alert, name or value, in UTF-8 bytes.",
    )
    max_alert_label_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Largest total of one alert's labels and annotations (names and values), "
        "in UTF-8 bytes; the same for the group's.",
    )
    max_webhook_alerts: int = Field(
        default=1000,
        gt=0,
        description="Most alerts a `webhook` Source reads from one body (the length of its "
        "`items`); a body with more is refused whole with a 422.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a request's headers, from connecting (or "
        "from its first byte on a kept-alive connection); then 408 and closed.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client has to send a request's body, from its headers; then "
        "408 and closed.",
    )
    keep_alive_seconds: int = Field(
        default=5, gt=0, description="Seconds an idle kept-alive connection stays open."
    )
    max_connections: int = Field(
        default=512,
        gt=0,
        description="Connections open at once; one more is answered 503 and closed.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        gt=0,
        description="Largest request line and headers, in bytes; larger is a 400.",
    )
    api_auth: Literal["tokens", "none"] = Field(
        default="tokens",
        description="`tokens`: the API needs a bearer token; `none`: open (loopback only).",
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description="File of API tokens, `<token> [read|operate|read,operate]` per line; "
        "re-read when it changes.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_API_TOKEN", "vigil_api_token"),
        description="One API token with every scope (VIGIL_API_TOKEN).",
    )

    trace_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(TRACE_URL_ENV, TRACE_URL_ENV.lower()),
        description=TRACE_URL_DESCRIPTION,
    )

    @field_validator("trace_url")
    @classmethod
    def _trace_url_names_the_trace(cls, value: str | None) -> str | None:
        return checked_trace_url(value)

    @model_validator(mode="after")
    def _label_limit_within_the_alert_limit(self) -> Self:
        if self.max_label_bytes > self.max_alert_label_bytes:
            msg = (
                f"VIGIL_INGEST_MAX_LABEL_BYTES ({self.max_label_bytes}) must not be over "
                f"VIGIL_INGEST_MAX_ALERT_LABEL_BYTES ({self.max_alert_label_bytes})"
            )
            raise ValueError(msg)
        return self

    def alert_limits(self) -> AlertLimits:
        return AlertLimits(
            max_label_bytes=self.max_label_bytes,
            max_alert_label_bytes=self.max_alert_label_bytes,
        )

    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_seconds=self.header_timeout_seconds,
            body_timeout_seconds=self.body_timeout_seconds,
            keep_alive_seconds=self.keep_alive_seconds,
            max_connections=self.max_connections,
            max_header_bytes=self.max_header_bytes,
        )

    @model_validator(mode="after")
    def _refuse_open_api_off_loopback(self) -> Self:
        if self.api_auth == "none" and not is_loopback(self.http_host):
            msg = (
                f"refusing to serve the API on {self.http_host} without authentication: "
                "bind 127.0.0.1 or set VIGIL_INGEST_API_AUTH=tokens with a token"
            )
            raise ValueError(msg)
        if self.api_auth == "tokens" and self.api_tokens_file is None and self.api_token is None:
            msg = (
                "the API needs a token and none is configured: set VIGIL_API_TOKEN or "
                "VIGIL_INGEST_API_TOKENS_FILE (or, on loopback only, VIGIL_INGEST_API_AUTH=none)"
            )
            raise ValueError(msg)
        return self
