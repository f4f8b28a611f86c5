"""Controller settings (env prefix VIGIL_CONTROLLER_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import ServiceSettings


class ControllerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_CONTROLLER_", extra="ignore", frozen=True)

    definitions: Path = Field(
        default=Path("examples/quickstart"),
        description="File mode: folder (or file) of Source/Workflow/Sink/Secret YAML.",
    )
    watch: bool = Field(default=True, description="Reload when files under `definitions` change.")
