"""Ingest settings (env prefix VIGIL_INGEST_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore", frozen=True)

    http_host: str = Field(default="0.0.0.0", description="Bind address of webhooks and the API.")
    http_port: int = Field(default=8080, description="Port of webhooks, the API and /healthz.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest webhook body accepted, in bytes."
    )
