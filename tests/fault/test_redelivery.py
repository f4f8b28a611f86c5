"""At-least-once steps, made safe: a step whose executor dies is redelivered and finished
by the restarted one; a long step heartbeats, so it is not redelivered while it runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    write_definitions,
)
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WORKFLOW = """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: long, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Long"']}
  steps:
    - name: work
      cli:
        command: ["sh", "-c", "echo start >> RUNS; sleep {{ alert.labels.seconds }}; echo done"]
        timeout: 60s
"""


def start(platform: Platform, name: str, seconds: str) -> None:
    body = alertmanager_body([firing_alert("Long", name=name, seconds=seconds)])
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def finished(platform: Platform, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = platform.api.get("/api/v1/executions", timeout=5).json()["items"]
        if items and items[0]["state"] not in ("pending", "running"):
            found: dict[str, Any] = items[0]
            return found
        time.sleep(0.1)
    raise AssertionError(platform.logs()[-4000:])


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    return write_definitions(
        tmp_path / "definitions",
        alertmanager_source("ops"),
        WORKFLOW.replace("RUNS", str(tmp_path / "runs.log")),
    )


def test_a_long_step_heartbeats_and_runs_once(definitions: Path, tmp_path: Path) -> None:
    """ack_wait is 2 s, the step takes 6 s: in_progress keeps it from being redelivered."""
    with running_platform(
        definitions=definitions,
        data_dir=tmp_path / "data",
        env={"VIGIL_EXECUTOR_ACK_WAIT_SECONDS": "2"},
    ) as platform:
        start(platform, "heartbeat", "6")
        execution = finished(platform)
        assert execution["state"] == "succeeded"
        assert execution["steps"][0]["output"]["stdout"] == "done\n"
        assert (tmp_path / "runs.log").read_text() == "start\n"  # ran exactly once
        assert platform.logs().count("step_started") == 1


def test_a_step_whose_executor_dies_is_redelivered_and_finished(
    definitions: Path, tmp_path: Path
) -> None:
    with running_platform(
        definitions=definitions,
        data_dir=tmp_path / "data",
        env={"VIGIL_EXECUTOR_ACK_WAIT_SECONDS": "2"},
    ) as platform:
        start(platform, "orphan", "3")
        runs = tmp_path / "runs.log"
        deadline = time.monotonic() + 30
        while not runs.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs.exists(), "the step never started"
        for pid in platform.service_pids("executor"):
            os.kill(pid, signal.SIGKILL)
        execution = finished(platform)
        assert execution["state"] == "succeeded"
        assert execution["steps"][0]["attempt"] == 1  # same attempt, redelivered
        assert runs.read_text() == "start\nstart\n"  # it ran again after the crash
        assert platform.logs().count("service_exited") == 1
