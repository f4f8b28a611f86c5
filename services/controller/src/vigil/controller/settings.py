"""Controller settings (env prefix VIGIL_CONTROLLER_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import CommaSeparated, ServiceSettings


class ControllerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_CONTROLLER_", extra="ignore", frozen=True)

    source: Literal["file", "kubernetes"] = Field(
        default="file",
        description="Where definitions come from: a folder of YAML, or the cluster's CRs.",
    )
    definitions: Path = Field(
        default=Path("examples/quickstart"),
        description="File mode: folder (or file) of Source/Workflow/Sink/Secret YAML.",
    )
    watch: bool = Field(default=True, description="Reload when files under `definitions` change.")
    namespaces: CommaSeparated = Field(
        default_factory=list,
        description="Kubernetes mode: namespaces to watch, comma-separated; empty = all.",
    )
    status_interval_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Kubernetes mode: seconds between writes of execution counters to a "
        "Workflow's status (a burst of runs costs one patch per interval).",
    )
