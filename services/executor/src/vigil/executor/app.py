"""Executor composition root: the runners by step kind, one consumer per kind, cancellation
notices, ops server."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import structlog

from vigil.common import streams, subjects
from vigil.common.adapters.service import (
    connected_bus,
    opened_store,
    ops_server,
    readiness_checks,
)
from vigil.common.messages import StepCancelled, StepRequest
from vigil.common.runtime import run_tasks
from vigil.executor.adapters.local import LocalProcessRunner
from vigil.executor.handlers import StepWorker
from vigil.executor.runners import Runners
from vigil.executor.settings import ExecutorSettings

log = structlog.get_logger(__name__)


def build_runners(settings: ExecutorSettings) -> Runners:
    """The runner of each step kind this executor takes."""
    artifact_limit = max(settings.artifact_limit_bytes, settings.output_limit_bytes)
    return {"cli": LocalProcessRunner(output_limit=artifact_limit)}


async def run(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    async with opened_store(settings) as store, connected_bus(settings, service="executor") as bus:
        runners = build_runners(settings)
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
        log.info("executor_starting", runners=sorted(runners))
        await run_tasks(
            stop,
            ops_server(settings, readiness_checks(bus=bus, store=store)).serve(),
            bus.listen(subjects.step_cancellations(), StepCancelled, worker.on_cancel),
            *consumers,
        )
