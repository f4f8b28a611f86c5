"""Executor composition root: the runners by step kind (a local process or a Kubernetes pod
for `cli`, by settings), one consumer per kind, cancellation notices, ops server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any

import structlog
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from vigil.common import streams, subjects
from vigil.common.adapters.service import (
    connected_bus,
    opened_store,
    ops_server,
    readiness_checks,
)
from vigil.common.errors import TransientError
from vigil.common.messages import StepCancelled, StepRequest
from vigil.common.runtime import run_tasks
from vigil.common.store import ExecutionStore
from vigil.common.telemetry import hide_url_path, hide_url_path_async
from vigil.executor.adapters import agents
from vigil.executor.adapters.local import LocalProcessRunner
from vigil.executor.agent import AgentRunner
from vigil.executor.configuration import agent_tools, cluster_api, configured_models
from vigil.executor.domain.pods import PodDefaults
from vigil.executor.failover import Breaker
from vigil.executor.handlers import StepWorker
from vigil.executor.runners import Runners, StepRunner
from vigil.executor.settings import ExecutorSettings

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def built_runners(
    settings: ExecutorSettings, store: ExecutionStore
) -> AsyncIterator[tuple[Runners, list[Coroutine[Any, Any, None]]]]:
    """The runner of each step kind, and the loops the runners need (orphan collection)."""
    output_limit = max(settings.artifact_limit_bytes, settings.output_limit_bytes)
    async with contextlib.AsyncExitStack() as stack:
        models = await stack.enter_async_context(configured_models(settings))
        api = await stack.enter_async_context(cluster_api(settings))
        tools = await stack.enter_async_context(agent_tools(settings, api))
        loops: list[Coroutine[Any, Any, None]] = []
        cli: StepRunner = LocalProcessRunner(output_limit=output_limit)
        if settings.runner == "kubernetes":
            cli, orphans = _pod_runner(settings, api, store, output_limit)
            loops.append(orphans)
        agent = AgentRunner(
            models=models,
            tools=tools,
            step_tools=agents.step_tools(tools),
            breaker=Breaker(
                failures=settings.agent_breaker_failures, seconds=settings.agent_breaker_seconds
            ),
        )
        yield {"cli": cli, "agent": agent}, loops


def _pod_runner(
    settings: ExecutorSettings, api: Any, store: ExecutionStore, output_limit: int
) -> tuple[StepRunner, Coroutine[Any, Any, None]]:
    from vigil.executor.adapters.kubernetes import PodRunner, collect_orphans

    defaults = PodDefaults(
        image=settings.step_image,
        resources={
            "requests": {"cpu": settings.step_cpu_request, "memory": settings.step_memory_request},
            "limits": {"memory": settings.step_memory_limit},
        },
    )
    runner = PodRunner(
        api=api,
        defaults=defaults,
        output_limit=output_limit,
        patience=timedelta(seconds=settings.pod_patience_seconds),
    )

    async def orphans() -> None:
        grace = timedelta(seconds=settings.orphan_grace_seconds)
        while True:
            try:
                await collect_orphans(api, store, grace=grace)
            except TransientError as exc:
                log.warning("orphan_collection_failed", error=str(exc))
            await asyncio.sleep(settings.orphan_interval_seconds)

    return runner, orphans()


async def run(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    trace_http_requests()
    async with (
        opened_store(settings) as store,
        connected_bus(settings, service="executor") as bus,
        built_runners(settings, store) as (runners, loops),
    ):
        worker = StepWorker(
            bus=bus, store=store, runners=runners, output_limit=settings.output_limit_bytes
        )
        consumers = [
            bus.consume(
                replace(
                    streams.executor_steps(kind),
                    ack_wait_seconds=settings.ack_wait_seconds,
                    max_deliver=settings.max_deliver,
                    max_in_flight=settings.steps_in_flight,
                    batch=settings.steps_in_flight,
                ),
                StepRequest,
                worker.on_step,
            )
            for kind in runners
        ]
        log.info("executor_starting", runners=sorted(runners), runner=settings.runner)
        await run_tasks(
            stop,
            ops_server(settings, readiness_checks(bus=bus, store=store)).serve(),
            bus.listen(subjects.step_cancellations(), StepCancelled, worker.on_cancel),
            *consumers,
            *loops,
        )


def trace_http_requests() -> None:
    """Every httpx request of this process in a client span of the current trace (httpx's
    client classes are patched, so once per process)."""
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # Only scheme, host and port of each URL: a path or query may hold a credential.
        instrumentor.instrument(request_hook=hide_url_path, async_request_hook=hide_url_path_async)
