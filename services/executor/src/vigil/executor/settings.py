"""Executor settings (env prefix VIGIL_EXECUTOR_, shared ones under VIGIL_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.common.settings import CommaSeparated, ServiceSettings


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

    runner: Literal["local", "kubernetes"] = Field(
        default="local",
        description="How cli steps run: local processes (embedded mode) or Kubernetes pods.",
    )
    step_image: str = Field(
        default="busybox:1.37",
        description="Kubernetes mode: the image of a step that names none (until the agent "
        "image with kubectl, curl, jq and dig is published, a small shell image).",
    )
    step_cpu_request: str = Field(default="50m", description="Kubernetes mode: step pod CPU.")
    step_memory_request: str = Field(default="64Mi", description="Step pod memory request.")
    step_memory_limit: str = Field(default="256Mi", description="Step pod memory limit.")
    pod_patience_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a step pod may stay unschedulable or fail to pull its image "
        "before the step fails with the reason.",
    )
    orphan_grace_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Age in seconds after which a Vigil pod whose execution is finished or "
        "unknown is deleted.",
    )
    orphan_interval_seconds: float = Field(
        default=60.0, gt=0, description="Seconds between looks for orphaned step pods."
    )
    agent_base_url: str | None = Field(
        default=None,
        description="Agent steps, primary model: an OpenAI-compatible server's base URL "
        "(e.g. Ollama's http://127.0.0.1:11434/v1).",
    )
    agent_model: str = Field(default="qwen2.5:7b", description="The primary model's id.")
    agent_api_key: SecretStr | None = Field(
        default=None, description="The primary server's API key, if it wants one."
    )
    agent_api_key_file: Path | None = Field(
        default=None,
        description="A file holding the primary's API key (a mounted Secret), instead.",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, description="Agent steps, fallback model: an Anthropic API key."
    )
    anthropic_api_key_file: Path | None = Field(
        default=None,
        description="A file holding the Anthropic API key (a mounted Secret), instead.",
    )
    anthropic_model: str = Field(default="claude-sonnet-4-5", description="The fallback's id.")
    anthropic_base_url: str | None = Field(
        default=None, description="The Anthropic API's base URL (default: Anthropic's)."
    )
    agent_request_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Seconds one model request may take."
    )
    agent_breaker_failures: int = Field(
        default=3,
        ge=1,
        description="Unavailable answers in a row after which a model is passed over.",
    )
    agent_breaker_seconds: float = Field(
        default=30.0, ge=0, description="Seconds a model is passed over before it is asked again."
    )
    agent_http_allowed_hosts: CommaSeparated = Field(
        default_factory=list,
        description="Hosts (and their subdomains) the http_get and runbook tools may read.",
    )
    agent_prometheus_url: str | None = Field(
        default=None, description="The Prometheus the prometheus tool queries (its base URL)."
    )
    agent_kubernetes_tools: bool | None = Field(
        default=None,
        description="Give agents the kubernetes and logs tools (default: in Kubernetes mode).",
    )

    @model_validator(mode="after")
    def _keys_from_files(self) -> Self:
        """Read the API keys kept in files (Secrets mounted as volumes)."""
        for name in ("agent_api_key", "anthropic_api_key"):
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            env = f"VIGIL_EXECUTOR_{name.upper()}"
            if getattr(self, name) is not None:
                msg = f"{env} and {env}_FILE are both set: keep one"
                raise ValueError(msg)
            try:
                key = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                msg = f"{env}_FILE: cannot read {path}: {exc.strerror}"
                raise ValueError(msg) from exc
            if not key:
                msg = f"{env}_FILE: {path} is empty"
                raise ValueError(msg)
            object.__setattr__(self, name, SecretStr(key))
        return self
