"""Executor settings (env prefix VIGIL_EXECUTOR_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import ServiceSettings


class ExecutorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_EXECUTOR_", extra="ignore", frozen=True)

    steps_in_flight: int = Field(default=16, ge=1, description="cli steps run concurrently.")
    output_limit_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Bytes of stdout and of stderr kept per step."
    )
    artifact_limit_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Bytes of stdout and of stderr kept in the output artifact.",
    )
    max_deliver: int = Field(default=5, ge=2, description="Deliveries before dead-lettering.")
    ack_wait_seconds: float = Field(
        default=30.0, gt=1, description="Seconds without a heartbeat before redelivery."
    )
