"""Engine settings (env prefix VIGIL_ENGINE_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import ServiceSettings


class EngineSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_ENGINE_", extra="ignore", frozen=True)

    alerts_in_flight: int = Field(
        default=512, ge=1, description="Alerts in flight (several batches at a time)."
    )
    alerts_batch: int = Field(
        default=256, ge=1, description="Alerts handled together in one store transaction."
    )
    results_in_flight: int = Field(
        default=256, ge=1, description="Results in flight (several batches at a time)."
    )
    results_batch: int = Field(
        default=128, ge=1, description="Results applied together in one store transaction."
    )
    timer_interval_seconds: float = Field(
        default=0.25, gt=0, description="Seconds between polls for due timers."
    )
    schedule_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Longest sleep of the schedule loop between ticks, in seconds: how soon a new"
            " or changed schedule Source is seen."
        ),
    )
    schedule_grace_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How late, in seconds, a tick of a `catchUp: none` schedule may still fire;"
            " an older missed tick is skipped."
        ),
    )
    purge_interval_seconds: float = Field(
        default=300.0, gt=0, description="Seconds between purges of expired documents."
    )
    max_deliver: int = Field(
        default=10, ge=2, description="Deliveries of a message before it is dead-lettered."
    )
