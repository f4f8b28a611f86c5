"""Ingest settings (env prefix VIGIL_INGEST_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import SecretSettings, is_loopback


class IngestSettings(SecretSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore", frozen=True)

    http_host: str = Field(
        default="127.0.0.1",
        description="Bind address of webhooks and the API; another than loopback needs auth.",
    )
    http_port: int = Field(default=8080, description="Port of webhooks, the API and /healthz.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest webhook body accepted, in bytes."
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
