"""Sink settings (env prefix VIGIL_SINK_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import (
    TRACE_URL_DESCRIPTION,
    TRACE_URL_ENV,
    SecretSettings,
    checked_trace_url,
)


class SinkSettings(SecretSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_SINK_", extra="ignore", frozen=True)

    deliveries_in_flight: int = Field(default=32, ge=1, description="Notify steps at once.")
    attempts: int = Field(
        default=3, ge=1, description="HTTP attempts per delivery before handing back to the bus."
    )
    backoff_seconds: float = Field(default=0.5, gt=0, description="First retry delay, doubled.")
    max_backoff_seconds: float = Field(
        default=60.0, gt=0, description="Longest retry delay (seconds) the doubling reaches."
    )
    jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Fraction of each retry delay taken off at random (0: none, 1: up to all).",
    )
    deadline_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds from a delivery's first attempt after which no retry starts.",
    )
    max_deliver: int = Field(default=8, ge=2, description="Deliveries before dead-lettering.")
    public_url: str | None = Field(
        default=None,
        description="The API's URL as users reach it (e.g. https://vigil.example.com): "
        "reports link to {public_url}/api/v1/executions/{id}; no link when unset.",
    )
    trace_url: str | None = Field(
        default=None,
        # VIGIL_SINK_TRACE_URL: the name this setting had before ingest used it too.
        validation_alias=AliasChoices(
            TRACE_URL_ENV, TRACE_URL_ENV.lower(), "VIGIL_SINK_TRACE_URL", "vigil_sink_trace_url"
        ),
        description=TRACE_URL_DESCRIPTION,
    )
    slack_api_url: str = Field(
        default="https://slack.com/api",
        description="Base URL of Slack's Web API (chat.postMessage); tests point it at a fake.",
    )

    @field_validator("trace_url")
    @classmethod
    def _trace_url_names_the_trace(cls, value: str | None) -> str | None:
        return checked_trace_url(value)
