"""Controller settings: how the composition root learns where NATS and the definitions are.

`vigil up` and Kubernetes configure services through the environment; code that builds the
settings itself (tests, embedding) passes keyword arguments. Both must reach the service.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.controller.settings import ControllerSettings

NATS_URL = "nats://127.0.0.1:14222"


def test_the_environment_sets_the_shared_and_the_controller_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIGIL_NATS_URL", NATS_URL)
    monkeypatch.setenv("VIGIL_CONTROLLER_DEFINITIONS", str(tmp_path))
    monkeypatch.setenv("VIGIL_CONTROLLER_WATCH", "false")
    monkeypatch.setenv("VIGIL_CONTROLLER_OPS_PORT", "9310")

    settings = ControllerSettings()

    assert settings.nats_url == NATS_URL
    assert settings.definitions == tmp_path
    assert settings.watch is False
    assert settings.ops_port == 9310


def test_keyword_arguments_set_the_controllers_own_fields(tmp_path: Path) -> None:
    settings = ControllerSettings(definitions=tmp_path, ops_port=0, watch=False)

    assert (settings.definitions, settings.ops_port, settings.watch) == (tmp_path, 0, False)


def test_a_nats_url_given_as_a_keyword_argument_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_NATS_URL", raising=False)

    settings = ControllerSettings(nats_url=NATS_URL)

    assert settings.nats_url == NATS_URL


def test_the_other_shared_settings_given_as_keyword_arguments_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("VIGIL_STORE_URL", "VIGIL_LOG_FORMAT", "VIGIL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)

    settings = ControllerSettings(
        store_url="sqlite:////tmp/other.db", log_format="json", log_level="debug"
    )

    assert (settings.store_url, settings.log_format, settings.log_level) == (
        "sqlite:////tmp/other.db",
        "json",
        "debug",
    )


def test_kubernetes_mode_reads_its_namespaces_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_CONTROLLER_SOURCE", "kubernetes")
    monkeypatch.setenv("VIGIL_CONTROLLER_NAMESPACES", "monitoring, team-a,")

    settings = ControllerSettings()

    assert settings.source == "kubernetes"
    assert settings.namespaces == ["monitoring", "team-a"]


def test_by_default_the_controller_reads_a_folder_and_would_watch_every_namespace() -> None:
    settings = ControllerSettings()
    assert (settings.source, settings.namespaces) == ("file", [])
