"""Executor composition root: bus, the cli consumer, ops server."""

from __future__ import annotations

import asyncio

import structlog

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.errors import TransientError
from vigil.common.messages import StepCancelled, StepRequest
from vigil.common.ops import HttpServer, ops_app
from vigil.common.runtime import run_tasks
from vigil.common.store import open_store
from vigil.common.streams import ConsumerSpec, stream_specs
from vigil.executor.handlers import ExecutorHandlers
from vigil.executor.settings import ExecutorSettings

log = structlog.get_logger(__name__)


async def run(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    store = await open_store(settings.store_url, retention=settings.retention())
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-executor")
    try:
        await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
        handlers = ExecutorHandlers(
            bus=bus,
            store=store,
            output_limit=settings.output_limit_bytes,
            artifact_limit=max(settings.artifact_limit_bytes, settings.output_limit_bytes),
        )

        async def nats_ready() -> None:
            if not bus.connected:
                raise TransientError("not connected to NATS")

        ops = HttpServer(
            ops_app({"nats": nats_ready, "store": store.ping}),
            host=settings.ops_host,
            port=settings.ops_port,
        )
        log.info("executor_starting")
        await run_tasks(
            stop,
            ops.serve(),
            bus.listen(subjects.step_cancellations(), StepCancelled, handlers.on_cancel),
            bus.consume(
                ConsumerSpec(
                    stream=subjects.STEPS_STREAM,
                    durable="executor-cli",
                    filter_subject=subjects.steps("cli"),
                    ack_wait_seconds=settings.ack_wait_seconds,
                    max_deliver=settings.max_deliver,
                    max_in_flight=settings.steps_in_flight,
                    batch=settings.steps_in_flight,
                ),
                StepRequest,
                handlers.on_cli,
            ),
        )
    finally:
        await bus.close()
        await store.close()
