"""`vigil up` owns its data directory and its services: a second run on the same directory
is refused naming the first, and a `vigil up` killed outright (SIGKILL, no clean-up) takes
every service with it, so the next run starts on its own NATS and store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.definitions import alertmanager_source, log_sink, write_definitions
from tests.support.platform import running_platform, start_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

GONE_WITHIN_SECONDS = 30.0
SERVICES = ("nats", "controller", "engine", "executor", "sink", "ingest")


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _definitions(tmp_path: Path) -> Path:
    folder = tmp_path / "definitions"
    write_definitions(folder, alertmanager_source("ops"), log_sink("ops"))
    return folder


def test_a_second_vigil_up_on_the_same_data_dir_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with running_platform(definitions=_definitions(tmp_path), data_dir=data_dir) as first:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "vigil.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--definitions",
                str(tmp_path / "definitions"),
                "--http-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert second.returncode == 1
        said = second.stdout + second.stderr
        assert f"another vigil up (PID {first.process.pid}) is running on" in said
        assert first.process.poll() is None, "the first run goes on"


def test_a_killed_vigil_up_takes_its_services_with_it(tmp_path: Path) -> None:
    definitions, data_dir = _definitions(tmp_path), tmp_path / "data"
    platform = start_platform(definitions=definitions, data_dir=data_dir)
    pids = {name: platform.service_pids(name) for name in SERVICES}
    assert all(pids.values()), pids

    os.kill(platform.process.pid, signal.SIGKILL)
    platform.process.wait()

    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    alive = [pid for group in pids.values() for pid in group]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.1)
    assert alive == [], {name: [p for p in g if p in alive] for name, g in pids.items()}
    # The lock died with it: the next run takes the same data directory.
    with running_platform(definitions=definitions, data_dir=data_dir) as again:
        assert again.process.poll() is None
