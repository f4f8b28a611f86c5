"""Kubernetes API requests one pod step costs (`make bench`), counted against kmock.

The executor's `PodRunner` runs one step to its end against the emulated API server while
the bench plays the kubelet (the pod's status, its log); then each outcome a step can have
(success, image pull failure, cancellation, timeout) once more. The figure is a count, not a
time: it does not depend on the machine. Written to `docs/benchmarks.md` under
"## Kubernetes API requests per pod step".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import kmock
from kubernetes_asyncio import client

from bench.document import DOCUMENT, write_section
from tests.support.kubernetes import (
    VigilApiServer,
    closing_client,
    declare,
    exited,
    kubelet_sets,
    waiting,
)
from vigil.common.messages import CliStep, StepRequest
from vigil.executor.adapters.kubernetes import PodRunner
from vigil.executor.domain.pods import PodDefaults, pod_name

SECTION = "## Kubernetes API requests per pod step"
CLIENT_AGENT = "OpenAPI-Generator"
DEFAULTS = PodDefaults(image="busybox:1.37", resources={})

type Kubelet = Callable[[kmock.KubernetesEmulator, str], Awaitable[None]]


def request(n: int) -> StepRequest:
    execution = f"01BENCH{n:019d}"
    return StepRequest(
        execution_id=execution,
        namespace="bench",
        workflow="pods",
        step="probe",
        attempt=1,
        idempotency_key=f"{execution}/probe/1",
        cli=CliStep(argv=["true"], timeout_seconds=30),
    )


async def succeeds(api: kmock.KubernetesEmulator, name: str) -> None:
    await kubelet_sets(api, "bench", name, exited(0))


async def cannot_pull(api: kmock.KubernetesEmulator, name: str) -> None:
    await kubelet_sets(api, "bench", name, waiting("ImagePullBackOff", "no such image"))


async def times_out(api: kmock.KubernetesEmulator, name: str) -> None:
    await kubelet_sets(api, "bench", name, {"phase": "Failed", "reason": "DeadlineExceeded"})


async def one_step(
    api: kmock.KubernetesEmulator, runner: PodRunner, n: int, kubelet: Kubelet | None
) -> Counter[str]:
    """Run step `n`; return the requests the runner made, by action and subresource."""
    before = len(list(api))
    step = request(n)
    cancel = asyncio.Event()
    running = asyncio.create_task(runner.run(step, cancel))
    async with asyncio.timeout(10):
        while len(api[kmock.action.WATCH]) <= n:  # noqa: ASYNC110 - kmock only records requests
            await asyncio.sleep(0.01)
    if kubelet is None:
        cancel.set()
    else:
        await kubelet(api, pod_name(step))
    outcome = await asyncio.wait_for(running, 10)
    if kubelet is not None and not outcome.not_started:
        await runner.release(step)
    return Counter(
        f"{r.action.value.lower() if r.action else r.method.value}"
        + (f" {r.subresource}" if r.subresource else "")
        for r in list(api)[before:]
        if r.headers.get("User-Agent", "").startswith(CLIENT_AGENT)
    )


async def measure() -> list[tuple[str, Counter[str]]]:
    cases: list[tuple[str, Kubelet | None]] = [
        ("succeeded (create, watch, log, delete)", succeeds),
        ("image cannot be pulled", cannot_pull),
        ("timed out (the pod's deadline)", times_out),
        ("cancelled", None),
    ]
    results = []
    async with VigilApiServer() as api, kmock.Server(api, client_fct=closing_client):
        declare(api)
        api["get", kmock.resource("v1/pods"), kmock.subresource("log")] << b"ok\n"
        configuration = client.Configuration(host=str(api.url))
        async with client.ApiClient(configuration) as http:
            runner = PodRunner(
                api=http,
                defaults=DEFAULTS,
                output_limit=64 * 1024,
                patience=timedelta(seconds=60),
            )
            for n, (name, kubelet) in enumerate(cases):
                results.append((name, await one_step(api, runner, n, kubelet)))
    return results


def main() -> None:
    results = asyncio.run(measure())
    lines = [
        f"Counted {datetime.now(UTC):%Y-%m-%d} against kmock (the Kubernetes API emulator) with "
        "`make bench`: the requests the executor's pod runner makes for one `cli` step, by "
        "outcome. A count does not depend on the machine.",
        "",
        "| step outcome | requests | of which |",
        "|---|---:|---|",
    ]
    for name, counted in results:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counted.items()))
        lines.append(f"| {name} | {sum(counted.values())} | {detail} |")
        print(f"{name}: {sum(counted.values())} requests ({detail})")
    write_section(SECTION, "\n".join(lines))
    print(f"written to {DOCUMENT}")


if __name__ == "__main__":
    main()
