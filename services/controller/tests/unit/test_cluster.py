"""`ClusterDefinitions` through fakes: watch events in, definitions in the bucket, status
patches and Events out, and execution counters coalesced per workflow."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import timedelta

from tests.support.definitions import alertmanager_source
from vigil.common.definitions import Definition
from vigil.common.errors import TransientError
from vigil.common.messages import ExecutionEvent
from vigil.common.testing import EPOCH, FakeClock, MemoryBucket, delivery
from vigil.common.validation import load_yaml_documents
from vigil.controller.cluster import ClusterDefinitions
from vigil.controller.reconciling import Body, Key


@dataclass(slots=True)
class RecordingWriter:
    """The API server's side: statuses merged as a merge patch would, Events recorded."""

    statuses: dict[Key, Body] = field(default_factory=dict)
    patches: list[tuple[Key, Body]] = field(default_factory=list)
    events: list[tuple[Key, str, str]] = field(default_factory=list)
    failing: int = 0

    async def patch_status(self, key: Key, patch: Body) -> Body:
        if self.failing:
            self.failing -= 1
            raise TransientError("API server unavailable")
        self.patches.append((key, patch))
        self.statuses[key] = {**self.statuses.get(key, {}), **patch}
        return self.statuses[key]

    async def warn(self, key: Key, body: Body, *, reason: str, message: str) -> None:
        self.events.append((key, reason, message))


def cr(text: str, *, generation: int = 1) -> Body:
    (body,) = load_yaml_documents(text)
    assert isinstance(body, dict)
    body["metadata"].update(generation=generation, uid="u", resourceVersion="1")
    return body


SOURCE = cr(alertmanager_source("ops"))
SINK = cr(
    """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: hook, namespace: ops}
spec: {type: webhook, webhook: {urlSecretRef: {name: hook, key: url}}}
"""
)
WORKFLOW = cr(
    """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: disk, namespace: ops}
spec:
  steps: [{name: tell, notify: {sinks: [hook]}}]
"""
)


def secret(url: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook", "namespace": "ops"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


def controller() -> tuple[ClusterDefinitions, MemoryBucket, RecordingWriter]:
    bucket, writer = MemoryBucket(), RecordingWriter()
    return ClusterDefinitions(bucket=bucket, writer=writer, clock=FakeClock()), bucket, writer


def ready(writer: RecordingWriter, key: Key) -> str:
    (condition,) = writer.statuses[key]["conditions"]
    return str(condition["status"])


async def test_created_objects_are_published_and_marked_ready() -> None:
    cluster, bucket, writer = controller()
    cluster.seed([SOURCE, SINK, WORKFLOW, secret("http://127.0.0.1:9/a")])

    await cluster.reconcile()

    assert bucket.definition_keys() == [
        "def.sink.ops.hook",
        "def.source.ops.am",
        "def.workflow.ops.disk",
    ]
    assert ready(writer, ("Workflow", "ops", "disk")) == "True"
    assert writer.events == []
    assert cluster.published.is_set()


async def test_an_invalid_object_is_not_ready_with_an_event_and_not_published() -> None:
    cluster, bucket, writer = controller()
    cluster.seed([SOURCE, SINK, WORKFLOW])  # the Secret is missing

    await cluster.reconcile()
    await cluster.reconcile()  # nothing new: no second Event, no second patch

    assert bucket.definition_keys() == ["def.source.ops.am"]
    assert ready(writer, ("Sink", "ops", "hook")) == "False"
    assert writer.events == [
        (
            ("Sink", "ops", "hook"),
            "InvalidDefinition",
            "spec.webhook.urlSecretRef: Secret ops/hook is not defined",
        ),
        (
            ("Workflow", "ops", "disk"),
            "InvalidDefinition",
            "spec.steps[0].notify.sinks: Sink ops/hook is not ready (see its own error)",
        ),
    ]
    assert len(writer.patches) == 3


async def test_a_secret_is_checked_but_never_published_and_its_deletion_withdraws_the_sink() -> (
    None
):
    cluster, bucket, writer = controller()
    cluster.seed([SOURCE, SINK, secret("http://127.0.0.1:9/old")])
    await cluster.reconcile()
    cluster.on_event("MODIFIED", secret("http://127.0.0.1:9/new"))
    await cluster.reconcile()

    sink = Definition.model_validate_json(bucket.values["def.sink.ops.hook"])
    assert sink.resource.metadata.name == "hook"
    for value in bucket.values.values():
        assert b"127.0.0.1:9/" not in value
        assert base64.b64encode(b"http://127.0.0.1:9/new") not in value

    cluster.on_event("DELETED", secret("http://127.0.0.1:9/new"))
    await cluster.reconcile()

    assert "def.sink.ops.hook" not in bucket.values
    assert ready(writer, ("Sink", "ops", "hook")) == "False"


async def test_a_spec_change_is_observed_and_a_deletion_unpublished() -> None:
    cluster, bucket, writer = controller()
    cluster.seed([SOURCE, WORKFLOW.copy(), SINK, secret("http://x")])
    await cluster.reconcile()

    cluster.on_event("MODIFIED", cr(alertmanager_source("ops"), generation=2))
    cluster.on_event("DELETED", WORKFLOW)
    await cluster.reconcile()

    assert writer.statuses[("Source", "ops", "am")]["observedGeneration"] == 2
    assert "def.workflow.ops.disk" not in bucket.values


async def test_a_status_that_could_not_be_written_is_written_at_the_next_reconcile() -> None:
    cluster, _, writer = controller()
    cluster.seed([SOURCE])
    writer.failing = 1

    await cluster.reconcile()
    assert writer.patches == []
    assert cluster.changed.is_set(), "another reconcile is due"

    await cluster.reconcile()
    assert ready(writer, ("Source", "ops", "am")) == "True"


def execution_event(n: int, state: str) -> ExecutionEvent:
    return ExecutionEvent.model_validate(
        {
            "execution_id": f"ex{n}",
            "namespace": "ops",
            "workflow": "disk",
            "state": state,
            "at": EPOCH + timedelta(seconds=n),
        }
    )


async def test_a_burst_of_two_hundred_runs_costs_one_status_patch() -> None:
    cluster, _, writer = controller()
    cluster.seed([SOURCE, SINK, WORKFLOW, secret("http://x")])
    await cluster.reconcile()
    before = len(writer.patches)

    for n in range(200):
        await cluster.on_execution_event(execution_event(n, "running"), delivery())
        await cluster.on_execution_event(execution_event(n, "succeeded"), delivery())
    assert await cluster.flush_executions() == 1
    assert await cluster.flush_executions() == 0

    assert len(writer.patches) == before + 1
    status = writer.statuses[("Workflow", "ops", "disk")]
    assert status["executions"] == {"succeeded": 200}
    assert status["lastExecution"]["id"] == "ex199"
    assert status["conditions"][0]["status"] == "True", "the Ready condition is kept"


async def test_counters_that_could_not_be_written_are_kept_for_the_next_write() -> None:
    cluster, _, writer = controller()
    cluster.seed([SOURCE, SINK, WORKFLOW, secret("http://x")])
    await cluster.reconcile()
    await cluster.on_execution_event(execution_event(1, "failed"), delivery())
    writer.failing = 1

    assert await cluster.flush_executions() == 0
    await cluster.on_execution_event(execution_event(2, "succeeded"), delivery())
    assert await cluster.flush_executions() == 1

    status = writer.statuses[("Workflow", "ops", "disk")]
    assert status["executions"] == {"failed": 1, "succeeded": 1}
    assert status["lastExecution"]["id"] == "ex2"


async def test_executions_of_a_workflow_not_watched_here_are_not_written() -> None:
    cluster, _, writer = controller()
    await cluster.on_execution_event(execution_event(1, "succeeded"), delivery())
    assert await cluster.flush_executions() == 0
    assert writer.patches == []


def schedule_source(cron: str = "*/15 * * * *", *, zone: str = "Europe/Berlin") -> Body:
    return cr(
        f"""
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {{name: nightly, namespace: ops}}
spec:
  type: schedule
  schedule: {{cron: "{cron}", timeZone: {zone}, labels: {{alertname: Nightly}}}}
"""
    )


NIGHTLY: Key = ("Source", "ops", "nightly")


async def test_a_schedule_source_shows_its_next_fire_and_it_moves_on_with_the_clock() -> None:
    clock = FakeClock(EPOCH + timedelta(minutes=7))  # 08:07 in Berlin
    bucket, writer = MemoryBucket(), RecordingWriter()
    cluster = ClusterDefinitions(bucket=bucket, writer=writer, clock=clock)
    cluster.seed([schedule_source(), SOURCE])
    await cluster.reconcile()

    earliest = await cluster.refresh_next_fires()

    assert writer.statuses[NIGHTLY]["nextFireAt"] == "2026-01-01T00:15:00Z"
    assert earliest == EPOCH + timedelta(minutes=15)
    assert "nextFireAt" not in writer.statuses[("Source", "ops", "am")], "not a schedule"
    patches = len(writer.patches)
    assert await cluster.refresh_next_fires() == earliest
    assert len(writer.patches) == patches, "an unchanged next fire is not written again"

    clock.current = EPOCH + timedelta(minutes=15)
    await cluster.refresh_next_fires()
    assert writer.statuses[NIGHTLY]["nextFireAt"] == "2026-01-01T00:30:00Z"


async def test_a_schedule_source_made_invalid_loses_its_next_fire() -> None:
    cluster, _, writer = controller()
    cluster.seed([schedule_source()])
    await cluster.reconcile()
    await cluster.refresh_next_fires()
    assert writer.statuses[NIGHTLY]["nextFireAt"] is not None

    cluster.on_event("MODIFIED", schedule_source(zone="Mars/Olympus_Mons"))
    await cluster.reconcile()
    assert ready(writer, NIGHTLY) == "False"
    assert await cluster.refresh_next_fires() is None
    assert writer.patches[-1] == (NIGHTLY, {"nextFireAt": None})


async def test_the_next_fire_loop_writes_after_each_reconcile() -> None:
    cluster, _, writer = controller()
    loop = asyncio.create_task(cluster.write_next_fires())
    try:
        cluster.seed([schedule_source("0 3 * * *", zone="UTC")])
        await cluster.reconcile()
        async with asyncio.timeout(30):
            while writer.statuses.get(NIGHTLY, {}).get("nextFireAt") is None:
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert writer.statuses[NIGHTLY]["nextFireAt"] == "2026-01-01T03:00:00Z"
