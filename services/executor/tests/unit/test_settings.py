"""The executor's settings: API keys from the environment or from files (mounted Secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.executor.settings import ExecutorSettings


def test_an_api_key_is_read_from_a_mounted_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api-key").write_text("sk-ant-from-secret\n", encoding="utf-8")
    monkeypatch.setenv("VIGIL_EXECUTOR_ANTHROPIC_API_KEY_FILE", str(tmp_path / "api-key"))

    settings = ExecutorSettings()

    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-from-secret"
    assert settings.agent_api_key is None


@pytest.mark.parametrize(
    ("content", "also_in_env", "problem"),
    [
        (None, False, "VIGIL_EXECUTOR_AGENT_API_KEY_FILE: cannot read"),
        ("", False, "is empty"),
        ("k", True, "VIGIL_EXECUTOR_AGENT_API_KEY and VIGIL_EXECUTOR_AGENT_API_KEY_FILE are both"),
    ],
)
def test_a_key_file_that_cannot_serve_is_refused_saying_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    also_in_env: bool,
    problem: str,
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("VIGIL_EXECUTOR_AGENT_API_KEY_FILE", str(path))
    if also_in_env:
        monkeypatch.setenv("VIGIL_EXECUTOR_AGENT_API_KEY", "k")

    with pytest.raises(ValidationError, match=problem):
        ExecutorSettings()
