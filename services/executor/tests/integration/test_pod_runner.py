"""The pod runner against kmock (the Kubernetes API emulator over HTTP). The test plays the
kubelet: it sets the pod's status through the API, as a kubelet would, and scripts its
log. What is checked is what a cluster operator sees: the pod created (once), its spec,
the outcome the step gets, the pod deleted, and how many API requests a step costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kmock
import pytest
from kubernetes_asyncio import client

from tests.support.documents import make_execution
from tests.support.kubernetes import exited, kubelet_sets, waiting
from vigil.common.messages import CliStep, StepRequest
from vigil.common.store import ExecutionStore
from vigil.common.testing import sqlite_store
from vigil.executor.adapters.kubernetes import PodRunner, collect_orphans
from vigil.executor.domain.pods import PodDefaults, pod_manifest, pod_name
from vigil.executor.domain.results import ProcessOutcome

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PODS = kmock.resource("v1/pods")
WITHIN = 10.0
DEFAULTS = PodDefaults(image="busybox:1.37", resources={"requests": {"cpu": "50m"}})
CLIENT_AGENT = "OpenAPI-Generator"  # kubernetes-asyncio's User-Agent


def request(attempt: int = 1, execution: str = "01JEXECUTION00000000000000") -> StepRequest:
    return StepRequest(
        execution_id=execution,
        namespace="ops",
        workflow="disk",
        step="measure",
        attempt=attempt,
        idempotency_key=f"{execution}/measure/{attempt}",
        cli=CliStep(argv=["df", "-P", "/"], timeout_seconds=30),
    )


@contextlib.asynccontextmanager
async def pod_runner(
    k8s: kmock.KubernetesEmulator, *, patience: float = 60.0
) -> AsyncIterator[PodRunner]:
    async with client.ApiClient(client.Configuration(host=str(k8s.url))) as api:
        yield PodRunner(
            api=api,
            defaults=DEFAULTS,
            output_limit=1024,
            patience=timedelta(seconds=patience),
        )


async def until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WITHIN):
        while not check():
            await asyncio.sleep(0.02)


def pod_exists(k8s: kmock.KubernetesEmulator, name: str) -> bool:
    """Created and not deleted (kmock keeps a deleted object's history, ending in None)."""
    try:
        return k8s.objects["v1/pods", "ops", name, -1] is not None
    except KeyError:
        return False


def client_requests(k8s: kmock.KubernetesEmulator) -> list[tuple[str, str]]:
    return [
        (str(r.action.value if r.action else "-"), r.subresource or "")
        for r in k8s
        if r.headers.get("User-Agent", "").startswith(CLIENT_AGENT)
    ]


async def run_until_created(
    runner: PodRunner, k8s: kmock.KubernetesEmulator, step: StepRequest, cancel: asyncio.Event
) -> asyncio.Task[ProcessOutcome]:
    running = asyncio.create_task(runner.run(step, cancel))
    await until(lambda: pod_exists(k8s, pod_name(step)) or running.done(), "the pod is created")
    await until(lambda: len(k8s[kmock.action.WATCH]) >= 1, "the pod is watched")
    return running


async def test_a_step_runs_as_its_pod_and_costs_four_requests(
    k8s: kmock.KubernetesEmulator,
) -> None:
    k8s["get", PODS, kmock.subresource("log")] << b"Filesystem 1024-blocks Used\n/dev/sda 100 93\n"
    step = request()
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        name = pod_name(step)
        created = dict(k8s.objects["v1/pods", "ops", name])
        assert created["spec"] == pod_manifest(step, DEFAULTS)["spec"]

        await kubelet_sets(k8s, "ops", name, exited(0))
        outcome = await asyncio.wait_for(running, WITHIN)
        await runner.release(step)

    assert outcome == ProcessOutcome(
        exit_code=0, stdout="Filesystem 1024-blocks Used\n/dev/sda 100 93\n"
    )
    assert not pod_exists(k8s, name), "the pod is deleted once the result is out"
    (delete,) = k8s[kmock.action.DELETE, PODS]
    assert delete.params.get("gracePeriodSeconds") == "0"
    assert client_requests(k8s) == [
        ("CREATE", ""),
        ("WATCH", ""),
        ("FETCH", "log"),
        ("DELETE", ""),
    ]
    (log_request,) = k8s["get", PODS, kmock.subresource("log")]
    assert log_request.params == {"container": "step", "limitBytes": "1024"}


async def test_the_exit_code_of_a_failing_step_comes_from_the_container(
    k8s: kmock.KubernetesEmulator,
) -> None:
    k8s["get", PODS, kmock.subresource("log")] << b"no such mount\n"
    step = request()
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        await kubelet_sets(k8s, "ops", pod_name(step), exited(3))
        outcome = await asyncio.wait_for(running, WITHIN)
    assert (outcome.exit_code, outcome.stdout, outcome.timed_out) == (3, "no such mount\n", False)


async def test_a_pod_killed_at_its_deadline_is_a_timed_out_step(
    k8s: kmock.KubernetesEmulator,
) -> None:
    step = request()
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        await kubelet_sets(
            k8s, "ops", pod_name(step), {"phase": "Failed", "reason": "DeadlineExceeded"}
        )
        outcome = await asyncio.wait_for(running, WITHIN)
    assert (outcome.timed_out, outcome.exit_code) == (True, None)


async def test_an_image_that_cannot_be_pulled_fails_the_step_with_the_reason_at_once(
    k8s: kmock.KubernetesEmulator,
) -> None:
    step = request()
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        await kubelet_sets(
            k8s, "ops", pod_name(step), waiting("ImagePullBackOff", 'Back-off pulling image "nope"')
        )
        outcome = await asyncio.wait_for(running, WITHIN)
    assert outcome.not_started == 'ImagePullBackOff: Back-off pulling image "nope"'
    assert not pod_exists(k8s, pod_name(step)), "a pod that will never run is deleted"


async def test_an_unschedulable_pod_fails_the_step_after_the_patience(
    k8s: kmock.KubernetesEmulator,
) -> None:
    step = request()
    async with pod_runner(k8s, patience=0.5) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory.",
        }
        await kubelet_sets(
            k8s, "ops", pod_name(step), {"phase": "Pending", "conditions": [condition]}
        )
        outcome = await asyncio.wait_for(running, WITHIN)
    assert outcome.not_started == "Unschedulable: 0/3 nodes are available: 3 Insufficient memory."


async def test_a_redelivered_request_attaches_to_the_pod_already_running(
    k8s: kmock.KubernetesEmulator,
) -> None:
    k8s["get", PODS, kmock.subresource("log")] << b"done\n"
    step = request()
    existing = pod_manifest(step, DEFAULTS)
    async with k8s.post("/api/v1/namespaces/ops/pods", json=existing) as response:
        assert response.status == 201
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, asyncio.Event())
        await kubelet_sets(k8s, "ops", pod_name(step), exited(0))
        outcome = await asyncio.wait_for(running, WITHIN)

    assert outcome.exit_code == 0
    ours = [
        r
        for r in k8s[kmock.action.CREATE, PODS]
        if r.headers.get("User-Agent", "").startswith(CLIENT_AGENT)
    ]
    assert len(ours) == 1, "one create, answered 409: the runner attached to the running pod"
    async with k8s.get("/api/v1/namespaces/ops/pods") as response:
        listed = await response.json()
    assert [p["metadata"]["name"] for p in listed["items"]] == [pod_name(step)]


async def test_a_cancelled_step_deletes_its_pod(k8s: kmock.KubernetesEmulator) -> None:
    step = request()
    cancel = asyncio.Event()
    async with pod_runner(k8s) as runner:
        running = await run_until_created(runner, k8s, step, cancel)
        cancel.set()
        outcome = await asyncio.wait_for(running, WITHIN)
    assert outcome.cancelled is True
    assert not pod_exists(k8s, pod_name(step))


async def test_orphaned_pods_of_finished_or_unknown_executions_are_collected(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    async with sqlite_store(tmp_path) as store:
        finished = make_execution("01FINISHED0000000000000000", at=datetime.now(UTC))
        running = make_execution("01RUNNING00000000000000000", at=datetime.now(UTC))
        assert await store.insert_execution(finished.model_copy(update={"state": "succeeded"}))
        assert await store.insert_execution(running.model_copy(update={"state": "running"}))
        pods = {
            "finished": (request(execution=finished.id), old),
            "running": (request(execution=running.id), old),
            "unknown": (request(execution="01UNKNOWN00000000000000000"), old),
            "young": (request(execution="01YOUNG0000000000000000000"), None),
        }
        for step, created in pods.values():
            manifest = pod_manifest(step, DEFAULTS)
            if created is not None:
                manifest["metadata"]["creationTimestamp"] = created
            async with k8s.post("/api/v1/namespaces/ops/pods", json=manifest) as response:
                assert response.status == 201

        async with client.ApiClient(client.Configuration(host=str(k8s.url))) as api:
            store_port: ExecutionStore = store
            deleted = await collect_orphans(api, store_port, grace=timedelta(minutes=10))

    assert deleted == 2
    left = {label for label, (step, _) in pods.items() if pod_exists(k8s, pod_name(step))}
    assert left == {"running", "young"}
