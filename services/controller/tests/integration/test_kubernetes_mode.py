"""The controller in Kubernetes mode against kmock (the Kubernetes API emulator over HTTP),
with a real nats-server: custom resources in, definitions in the config bucket, `status`
and Events back on the resources, and executions counted on each Workflow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest

from tests.support.bus import config_bucket_messages
from tests.support.kubernetes import custom_resource, kubeconfig
from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.bus import Outgoing
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.messages import ExecutionEvent
from vigil.controller.app import run
from vigil.controller.settings import ControllerSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WITHIN = 15.0
CRS = "/apis/vigil.dev/v1alpha1/namespaces/ops"

SOURCE = custom_resource(
    """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: ops}
spec: {type: alertmanager}
"""
)
SINK = custom_resource(
    """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: hook, namespace: ops}
spec: {type: webhook, webhook: {urlSecretRef: {name: hook, key: url}}}
"""
)
WORKFLOW = custom_resource(
    """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: disk, namespace: ops}
spec:
  trigger: {sources: [am], matchers: ['alertname="DiskFull"']}
  steps: [{name: tell, notify: {sinks: [hook]}}]
"""
)


def secret(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook", "namespace": "ops"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    api: kmock.KubernetesEmulator
    view: DefinitionsView
    bus: JetStreamBus

    def status(self, plural: str, name: str) -> dict[str, Any]:
        found = dict(self.api.objects[f"vigil.dev/v1alpha1/{plural}", "ops", name])
        status: dict[str, Any] = found.get("status") or {}
        return status

    def ready(self, plural: str, name: str) -> str | None:
        conditions = self.status(plural, name).get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Ready"), None)

    def events(self) -> list[dict[str, Any]]:
        return [r.data for r in self.api["post", kmock.resource("v1/events")]]

    def status_patches(self, plural: str, name: str) -> int:
        patches = self.api["patch", kmock.resource(f"vigil.dev/v1alpha1/{plural}")]
        return sum(1 for r in patches if r.name == name and r.subresource == "status")


async def eventually(check: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def controller_in(
    k8s: kmock.KubernetesEmulator, nats_url: str, tmp_path: Path, *, status_interval: float = 0.3
) -> AsyncIterator[Cluster]:
    bus = await JetStreamBus.connect(nats_url, name="test-observer")
    view = DefinitionsView()
    viewing: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIGIL_NATS_URL", nats_url)
        env.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", k8s)))
        settings = ControllerSettings(source="kubernetes", status_interval_seconds=status_interval)
        controller = asyncio.create_task(run(settings, stop), name="controller")
        try:
            async with asyncio.timeout(WITHIN):
                while not await _has_bucket(bus):
                    if controller.done():
                        await controller  # raises what stopped it
                    await asyncio.sleep(0.05)
            viewing = asyncio.create_task(view.run(await bus.config_bucket()))
            yield Cluster(api=k8s, view=view, bus=bus)
        finally:
            stop.set()
            async with asyncio.timeout(WITHIN):
                await controller
            if viewing is not None:
                viewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await viewing
            await bus.close()


async def _has_bucket(bus: JetStreamBus) -> bool:
    """The controller has published its first definitions (the bucket has keys)."""
    try:
        bucket = await bus.config_bucket()
        return bool(await bucket.keys())
    except TransientError:  # not reachable yet
        return False


async def create(k8s: kmock.KubernetesEmulator, plural: str, body: dict[str, Any]) -> None:
    path = f"/api/v1/namespaces/ops/{plural}" if plural == "secrets" else f"{CRS}/{plural}"
    async with k8s.post(path, json=body) as response:
        assert response.status == 201, await response.text()


async def test_resources_become_ready_definitions_and_follow_changes(
    k8s: kmock.KubernetesEmulator, nats_url: str, tmp_path: Path
) -> None:
    await create(k8s, "sources", SOURCE)
    await create(k8s, "sinks", SINK)
    await create(k8s, "workflows", WORKFLOW)
    await create(k8s, "secrets", secret("http://127.0.0.1:9/old"))

    async with controller_in(k8s, nats_url, tmp_path) as cluster:
        await eventually(lambda: cluster.view.workflow("ops", "disk") is not None, "published")
        await eventually(lambda: cluster.ready("workflows", "disk") == "True", "Ready=True")
        assert cluster.status("sources", "am")["webhookPath"] == "/hooks/ops/am"
        assert cluster.status("workflows", "disk")["trigger"] == 'am: alertname="DiskFull"'
        assert cluster.status("workflows", "disk")["observedGeneration"] == 1
        assert cluster.events() == []

        # An invalid Workflow: not Ready with the reason, an Event, nothing published.
        broken = custom_resource(
            """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: broken, namespace: ops}
spec:
  steps: [{name: tell, notify: {sinks: [nowhere]}}]
"""
        )
        await create(k8s, "workflows", broken)
        await eventually(lambda: cluster.ready("workflows", "broken") == "False", "Ready=False")
        (condition,) = cluster.status("workflows", "broken")["conditions"]
        assert condition["reason"] == "Invalid"
        assert condition["message"] == "spec.steps[0].notify.sinks: Sink ops/nowhere is not defined"
        await eventually(lambda: len(cluster.events()) == 1, "one Event")
        (event,) = cluster.events()
        assert event["type"] == "Warning"
        assert event["reason"] == "InvalidDefinition"
        assert event["involvedObject"]["name"] == "broken"
        assert cluster.view.workflow("ops", "broken") is None

        # A spec change is observed at its new generation.
        changed = {"spec": {**WORKFLOW["spec"], "timeout": "5m"}, "metadata": {"generation": 2}}
        async with k8s.patch(f"{CRS}/workflows/disk", json=changed) as response:
            assert response.status == 200
        await eventually(
            lambda: cluster.status("workflows", "disk").get("observedGeneration") == 2,
            "generation 2 observed",
        )

        # The Secret is checked, never published: no value (old or new) is in the bucket.
        async with k8s.patch(
            "/api/v1/namespaces/ops/secrets/hook",
            json={"data": {"url": base64.b64encode(b"http://127.0.0.1:9/new").decode()}},
        ) as response:
            assert response.status == 200
        stored = await config_bucket_messages(nats_url)
        assert any(subject.endswith("def.sink.ops.hook") for subject, _ in stored)
        for url in (b"http://127.0.0.1:9/old", b"http://127.0.0.1:9/new"):
            for subject, value in stored:
                assert url not in value, subject
                assert base64.b64encode(url) not in value, subject
        # Deleted, the Secret withdraws the Sink that needs it (ready again when it returns).
        async with k8s.delete("/api/v1/namespaces/ops/secrets/hook") as response:
            assert response.status == 200
        await eventually(lambda: cluster.view.sink("ops", "hook") is None, "the Sink withdrawn")
        await eventually(lambda: cluster.ready("sinks", "hook") == "False", "Sink Ready=False")

        # Deleted: gone from the bucket.
        async with k8s.delete(f"{CRS}/workflows/disk") as response:
            assert response.status == 200
        await eventually(lambda: cluster.view.workflow("ops", "disk") is None, "unpublished")


async def test_a_burst_of_executions_costs_a_handful_of_status_patches(
    k8s: kmock.KubernetesEmulator, nats_url: str, tmp_path: Path
) -> None:
    await create(k8s, "sources", SOURCE)
    await create(k8s, "sinks", SINK)
    await create(k8s, "workflows", WORKFLOW)
    await create(k8s, "secrets", secret("http://127.0.0.1:9/x"))

    # Two seconds between writes: the 400 events arrive within one or two intervals even on
    # a loaded machine, so "a handful" holds however fast they are consumed.
    async with controller_in(k8s, nats_url, tmp_path, status_interval=2.0) as cluster:
        await eventually(lambda: cluster.ready("workflows", "disk") == "True", "Ready=True")
        before = cluster.status_patches("workflows", "disk")
        start = datetime(2026, 12, 1, tzinfo=UTC)
        events = [
            Outgoing(
                subject=subjects.events("ops", "disk"),
                message=ExecutionEvent(
                    execution_id=f"ex{n:03d}",
                    namespace="ops",
                    workflow="disk",
                    state=state,
                    at=start + timedelta(milliseconds=n * 10 + (5 if state != "running" else 0)),
                ),
                msg_id=f"ex{n:03d}/state/{state}",
            )
            for n in range(200)
            for state in ("running", "failed" if n % 20 == 0 else "succeeded")
        ]
        await cluster.bus.publish_all(events)

        def counted() -> bool:
            return cluster.status("workflows", "disk").get("executions") == {
                "succeeded": 190,
                "failed": 10,
            }

        await eventually(counted, "200 executions counted")
        status = cluster.status("workflows", "disk")
        assert status["lastExecution"]["id"] == "ex199"
        assert status["lastExecution"]["state"] == "succeeded"
        patches = cluster.status_patches("workflows", "disk") - before
        assert 1 <= patches <= 5, f"{patches} status patches for 200 executions"
        assert cluster.ready("workflows", "disk") == "True"
