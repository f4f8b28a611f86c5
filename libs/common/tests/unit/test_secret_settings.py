"""Where ingest and the sink read Secret values (`SecretSettings`, shared by both), and the
resolver `secret_resolver` builds from it: the environment `vigil up` or a ConfigMap sets
once, a wrong value refused naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.common.adapters.service import secret_resolver
from vigil.common.secrets import SecretKey
from vigil.common.settings import SecretSettings


def test_the_shared_environment_names_set_the_source_folder_and_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIGIL_SECRETS_FROM", "kubernetes")
    monkeypatch.setenv("VIGIL_DEFINITIONS", str(tmp_path))
    monkeypatch.setenv("VIGIL_SECRETS_CACHE_SECONDS", "2.5")

    settings = SecretSettings()

    assert (settings.secrets_from, settings.definitions, settings.secrets_cache_seconds) == (
        "kubernetes",
        tmp_path,
        2.5,
    )


@pytest.mark.parametrize(
    ("name", "value"), [("VIGIL_SECRETS_FROM", "vault"), ("VIGIL_SECRETS_CACHE_SECONDS", "0")]
)
def test_a_wrong_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=name):
        SecretSettings()


async def test_file_mode_resolves_from_the_folder_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: hook, namespace: ops}\n"
        "stringData: {url: 'http://127.0.0.1:9/hook'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("VIGIL_DEFINITIONS", str(tmp_path))

    async with secret_resolver(SecretSettings()) as secrets:
        url = await secrets.resolve(SecretKey(namespace="ops", name="hook", key="url"))

    assert url == "http://127.0.0.1:9/hook"
