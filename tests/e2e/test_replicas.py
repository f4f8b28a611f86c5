"""`vigil up --replicas engine=2,executor=2,sink=2`: the replicas of a service share its
durable consumers, so every alert still makes exactly one execution and every step runs
exactly once; a service that cannot have replicas is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    log_sink,
    workflow,
    write_definitions,
)
from tests.support.platform import running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ALERTS = 60
SETTLED_WITHIN_SECONDS = 120.0


def test_replicated_services_run_every_step_exactly_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    definitions = write_definitions(
        tmp_path / "definitions",
        alertmanager_source("ops"),
        log_sink("ops"),
        workflow(
            "once",
            f"""\
            - name: run
              cli:
                command: [sh, -c, 'echo "$0 $PPID" >> {runs}', "{{{{ alert.labels.seq }}}}"]
            - name: tell
              notify: {{sinks: [console], title: "seq {{{{ alert.labels.seq }}}}"}}
            """,
        ),
    )
    with running_platform(
        definitions=definitions,
        data_dir=tmp_path / "data",
        extra_args=["--replicas", "engine=2,executor=2,sink=2"],
    ) as platform:
        executors = platform.service_pids("executor")
        assert len(platform.service_pids("engine")) == 2
        assert len(executors) == 2
        assert len(platform.service_pids("sink")) == 2
        for start in range(0, ALERTS, 10):
            alerts = [
                firing_alert("DiskFull", seq=str(seq), instance=f"host-{seq}")
                for seq in range(start, start + 10)
            ]
            answer = platform.api.post("/hooks/ops/am", json=alertmanager_body(alerts))
            assert answer.status_code == 200, answer.text

        deadline = time.monotonic() + SETTLED_WITHIN_SECONDS
        states: Counter[str] = Counter()
        while time.monotonic() < deadline:
            page = platform.api.get("/api/v1/executions", params={"limit": 500}).json()
            states = Counter(item["state"] for item in page["items"])
            if states["succeeded"] >= ALERTS or states["failed"]:
                break
            time.sleep(0.2)
        assert states == {"succeeded": ALERTS}, platform.logs()[-4000:]

    lines = [line.split() for line in runs.read_text().splitlines()]
    seqs = Counter(seq for seq, _ in lines)
    assert seqs == Counter(str(seq) for seq in range(ALERTS)), "a step ran twice or never"
    assert {int(parent) for _, parent in lines} <= set(executors)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("ingest=2", "'ingest' cannot have replicas here"),
        ("engine=0", "engine=0: between 1 and 8 processes"),
        ("engine", "'engine': expected SERVICE=N"),
        ("engine=2,engine=3", "engine is given twice"),
    ],
)
def test_a_replica_count_that_cannot_work_is_refused_naming_it(
    tmp_path: Path, value: str, said: str
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "--data-dir", str(tmp_path), "--replicas", value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert said in refused.stderr
    assert list(tmp_path.iterdir()) == [], "nothing started"
