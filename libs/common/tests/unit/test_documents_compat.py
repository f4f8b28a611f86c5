"""Stored documents across releases: a field a newer release wrote is kept, not refused."""

from __future__ import annotations

from vigil.common.documents import Execution
from vigil.common.testing import EPOCH


def test_an_execution_written_by_a_newer_release_is_read_and_written_back_whole() -> None:
    written = {
        "id": "01EX",
        "namespace": "ops",
        "workflow": "disk",
        "workflow_generation": 1,
        "source": "am",
        "alert_id": "ops/am/f1",
        "trigger_key": "t",
        "concurrency_key": "f1",
        "alert": {
            "status": "firing",
            "fingerprint": "f1",
            "labels": {"alertname": "DiskFull"},
            "starts_at": EPOCH.isoformat(),
        },
        "state": "running",
        "created_at": EPOCH.isoformat(),
        "updated_at": EPOCH.isoformat(),
        "steps": [{"name": "check", "kind": "cli", "future_step_field": 2}],
        "future_field": {"from": "a later release"},
    }

    execution = Execution.model_validate(written)

    again = execution.model_dump(mode="json", by_alias=True)
    assert again["future_field"] == {"from": "a later release"}
    assert again["steps"][0]["future_step_field"] == 2
