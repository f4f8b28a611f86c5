"""Settings shared by every service; each service subclasses with its own env prefix.

Shared infrastructure settings (`VIGIL_NATS_URL`, `VIGIL_STORE_URL`, `VIGIL_LOG_*`) are
read under one global name so that `vigil up` and a Kubernetes ConfigMap set them once.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vigil.common.store import Retention


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list set in the environment as `a,b,c` (not as JSON).
type CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a port on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _global(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=_global("VIGIL_NATS_URL"),
        description="NATS server URL(s), comma-separated.",
    )
    store_url: str = Field(
        default="sqlite:///.vigil/vigil.db",
        validation_alias=_global("VIGIL_STORE_URL"),
        description="Execution store: sqlite:///path or mongodb://host:port/db.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        validation_alias=_global("VIGIL_LOG_FORMAT"),
        description="json in production; console for a terminal; auto picks by isatty.",
    )
    log_level: str = Field(default="info", validation_alias=_global("VIGIL_LOG_LEVEL"))
    ops_host: str = Field(default="127.0.0.1", description="Bind address of /healthz, /metrics.")
    ops_port: int = Field(default=0, description="Port of /healthz, /readyz, /metrics; 0 = any.")
    shutdown_grace_seconds: float = Field(
        default=10.0, description="Seconds to finish in-flight work after SIGTERM."
    )
    retention_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_global("VIGIL_RETENTION_DAYS"),
        description="Days finished executions, alerts, artifacts and deliveries are kept.",
    )
    stream_max_age_days: float = Field(
        default=7.0,
        validation_alias=_global("VIGIL_ALERTS_MAX_AGE_DAYS"),
        description="Days the ALERTS stream keeps alerts for replay.",
    )

    def retention(self) -> Retention:
        keep = timedelta(days=self.retention_days)
        return Retention(executions=keep, alerts=keep, artifacts=keep, deliveries=keep)


class SecretSettings(ServiceSettings):
    """A service that resolves Secret values at use (ingest, the sink): where it reads them.

    Shared names, so `vigil up` and a ConfigMap set them once for both services.
    """

    secrets_from: Literal["file", "kubernetes"] = Field(
        default="file",
        validation_alias=_global("VIGIL_SECRETS_FROM"),
        description="`file`: `kind: Secret` YAML under `definitions`; `kubernetes`: the "
        "Secret objects, through the API (needs `get` on secrets).",
    )
    definitions: Path = Field(
        default=Path("examples/quickstart"),
        validation_alias=_global("VIGIL_DEFINITIONS"),
        description="File mode: the folder (or file) of definitions the controller reads.",
    )
    secrets_cache_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=_global("VIGIL_SECRETS_CACHE_SECONDS"),
        description="Kubernetes mode: seconds a Secret read from the API is reused (a "
        "rotation takes effect within this many seconds).",
    )
