"""A schedule Source through `vigil up` on the wall clock: a `* * * * *` schedule fires
within a minute and runs its workflow once for the tick, and the API shows its next fire
time. Slow (it waits for a real minute): the tick logic itself is tested on a fake clock
(`services/engine/tests/unit/test_schedule_loop.py`,
`tests/integration/test_schedule_replicas.py`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.support.definitions import log_sink, write_definitions
from tests.support.platform import running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

DEFINITIONS = """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: minutely, namespace: ops}
spec:
  type: schedule
  schedule: {cron: "* * * * *", labels: {alertname: Minutely}}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: tick, namespace: ops}
spec:
  trigger: {sources: [minutely]}
  steps:
    - name: say
      cli: {command: ["echo", "tick {{ alert.startsAt }}"]}
"""


def test_a_minutely_schedule_runs_its_workflow_at_the_next_minute(tmp_path: Path) -> None:
    definitions = write_definitions(tmp_path / "definitions", log_sink("ops"), DEFINITIONS)
    with running_platform(definitions=definitions, data_dir=tmp_path / "data") as platform:
        listed = platform.api.get("/api/v1/definitions", timeout=5).json()["items"]
        (source,) = [d for d in listed if d["kind"] == "Source" and d["name"] == "minutely"]
        assert source["ready"], source["message"]
        next_fire = datetime.fromisoformat(source["nextFireAt"])
        assert (next_fire.second, next_fire.microsecond) == (0, 0)

        execution = platform.newest_finished(timeout=150, workflow="tick")

    assert execution["state"] == "succeeded", execution
    starts_at = datetime.fromisoformat(execution["alert"]["startsAt"])
    assert (starts_at.second, starts_at.microsecond) == (0, 0)
    assert execution["steps"][0]["output"]["stdout"].startswith("tick ")
