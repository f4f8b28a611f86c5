"""Kubernetes mode without a server: objects as the watch delivers them, the definitions
they validate to, and the status patches (and rejection Events) they call for."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from vigil.common.messages import ExecutionEvent
from vigil.common.testing import EPOCH
from vigil.controller.reconciling import Snapshot, status_updates, trigger_summary
from vigil.controller.tally import Tally, status_patch


def cr(kind: str, name: str, spec: dict[str, Any], *, generation: int = 1) -> dict[str, Any]:
    """A custom resource as the API server returns it (server-set metadata included)."""
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ops",
            "generation": generation,
            "uid": f"uid-{name}",
            "resourceVersion": "17",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": spec,
    }


SOURCE = cr("Source", "am", {"type": "alertmanager"})
SINK = cr(
    "Sink", "hook", {"type": "webhook", "webhook": {"urlSecretRef": {"name": "s", "key": "url"}}}
)
WORKFLOW = cr(
    "Workflow",
    "disk",
    {
        "trigger": {"sources": ["am"], "matchers": ['alertname="DiskFull"']},
        "steps": [{"name": "tell", "notify": {"sinks": ["hook"]}}],
    },
)
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "s", "namespace": "ops"},
    "data": {"url": base64.b64encode(b"http://127.0.0.1:9/x").decode()},
}


def snapshot(*bodies: dict[str, Any]) -> Snapshot:
    found = Snapshot()
    for body in bodies:
        found.put(body)
    return found


def ready_of(patch: dict[str, Any]) -> tuple[str, str, str]:
    (condition,) = patch["conditions"]
    return condition["status"], condition["reason"], condition["message"]


def test_valid_objects_become_definitions_that_reference_their_secrets_without_values() -> None:
    report = snapshot(SOURCE, SINK, WORKFLOW, SECRET).validate()

    assert report.problems() == []
    sink = next(d for d in report.definitions if d.resource.kind == "Sink")
    published = sink.model_dump_json(by_alias=True)
    assert '"urlSecretRef":{"name":"s","key":"url"}' in published
    assert "127.0.0.1:9/x" not in published
    assert base64.b64encode(b"http://127.0.0.1:9/x").decode() not in published


def test_every_new_object_gets_ready_observed_generation_and_its_own_fields() -> None:
    cluster = snapshot(SOURCE, SINK, WORKFLOW, SECRET)

    updates = {u.key: u for u in status_updates(cluster.validate(), cluster, now=EPOCH)}

    source = updates[("Source", "ops", "am")].patch
    assert ready_of(source) == ("True", "Valid", "valid")
    assert source["observedGeneration"] == 1
    assert source["webhookPath"] == "/hooks/ops/am"
    workflow = updates[("Workflow", "ops", "disk")].patch
    assert workflow["trigger"] == 'am: alertname="DiskFull"'
    assert workflow["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert all(u.rejected is None for u in updates.values())


def test_an_object_whose_status_already_says_so_needs_no_patch() -> None:
    cluster = snapshot(SOURCE)
    (update,) = status_updates(cluster.validate(), cluster, now=EPOCH)
    cluster.put({**SOURCE, "status": update.patch})

    later = EPOCH + timedelta(minutes=5)
    assert status_updates(cluster.validate(), cluster, now=later) == []


def test_a_missing_secret_marks_the_sink_and_its_workflow_not_ready_with_one_event_each() -> None:
    cluster = snapshot(SOURCE, SINK, WORKFLOW)

    updates = {u.key[0]: u for u in status_updates(cluster.validate(), cluster, now=EPOCH)}

    status, reason, message = ready_of(updates["Sink"].patch)
    assert (status, reason) == ("False", "Invalid")
    assert message == "spec.webhook.urlSecretRef: Secret ops/s is not defined"
    assert updates["Sink"].rejected == message
    assert updates["Workflow"].rejected is not None
    assert "Sink ops/hook is not ready" in updates["Workflow"].rejected

    for update in updates.values():
        cluster.put({**cluster.resources[update.key], "status": update.patch})
    assert status_updates(cluster.validate(), cluster, now=EPOCH) == [], "no second Event"


def test_a_secret_that_appears_makes_them_ready_and_keeps_no_stale_reason() -> None:
    cluster = snapshot(SOURCE, SINK, WORKFLOW)
    for update in status_updates(cluster.validate(), cluster, now=EPOCH):
        cluster.put({**cluster.resources[update.key], "status": update.patch})

    cluster.put(SECRET)
    later = EPOCH + timedelta(seconds=30)
    updates = {u.key[0]: u for u in status_updates(cluster.validate(), cluster, now=later)}

    assert ready_of(updates["Sink"].patch) == ("True", "Valid", "valid")
    assert updates["Sink"].patch["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:30Z"


def test_a_spec_change_is_observed_at_its_new_generation() -> None:
    cluster = snapshot(SOURCE)
    (update,) = status_updates(cluster.validate(), cluster, now=EPOCH)
    changed = cr("Source", "am", {"type": "alertmanager"}, generation=2)
    cluster.put({**changed, "status": update.patch})

    (again,) = status_updates(cluster.validate(), cluster, now=EPOCH)

    assert again.patch["observedGeneration"] == 2
    assert again.patch["conditions"][0]["observedGeneration"] == 2
    assert again.patch["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_a_removed_object_is_no_longer_a_definition() -> None:
    cluster = snapshot(SOURCE, WORKFLOW)
    cluster.remove(WORKFLOW)
    assert [d.resource.kind for d in cluster.validate().definitions] == ["Source"]


def test_the_trigger_summary_fits_a_column() -> None:
    assert trigger_summary({}) == "any alert"
    long = trigger_summary({"trigger": {"matchers": [f'label{n}="value"' for n in range(20)]}})
    assert len(long) == 80
    assert long.endswith("…")


def event(execution: str, state: str, at: float) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=execution,
        namespace="ops",
        workflow="disk",
        state=state,  # type: ignore[arg-type]
        at=EPOCH + timedelta(seconds=at),
    )


def test_a_burst_of_runs_is_one_patch_per_workflow_with_counters_added() -> None:
    tally = Tally()
    for n in range(200):
        tally.record(event(f"ex{n}", "running", n))
        tally.record(event(f"ex{n}", "succeeded" if n % 10 else "failed", n + 0.5))

    (runs,) = tally.take().values()
    patch = status_patch(runs, {"executions": {"succeeded": 5}})

    assert patch["executions"] == {"succeeded": 185, "failed": 20}
    assert patch["lastExecution"] == {
        "id": "ex199",
        "state": "succeeded",
        "time": "2026-01-01T00:03:19.500000Z",
    }
    assert tally.take() == {}


def test_an_older_event_does_not_replace_the_last_execution_shown() -> None:
    tally = Tally()
    tally.record(event("old", "succeeded", 1))
    (runs,) = tally.take().values()

    shown = {"lastExecution": {"id": "new", "state": "running", "time": "2026-01-01T00:00:09Z"}}
    assert "lastExecution" not in status_patch(runs, shown)
