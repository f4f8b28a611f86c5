"""Engine composition root: store, bus, definitions view, consumers, timers, ops server."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime

import structlog

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.messages import (
    AlertReceived,
    CancelRequested,
    DeadLetter,
    RunRequested,
    StepResult,
)
from vigil.common.ops import HttpServer, ops_app
from vigil.common.runtime import run_tasks
from vigil.common.store import open_store
from vigil.common.streams import ConsumerSpec, stream_specs
from vigil.engine.handlers import EngineHandlers
from vigil.engine.progress import Progress
from vigil.engine.settings import EngineSettings
from vigil.engine.timers import TimerLoop, purge_expired

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


async def run(settings: EngineSettings, stop: asyncio.Event) -> None:
    store = await open_store(settings.store_url, retention=settings.retention())
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-engine")
    try:
        await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
        definitions = DefinitionsView()
        progress = Progress(store=store, bus=bus)
        handlers = EngineHandlers(
            store=store, progress=progress, definitions=definitions, clock=_now
        )
        timers = TimerLoop(
            store=store,
            progress=progress,
            definitions=definitions,
            clock=_now,
            owner=f"{socket.gethostname()}/{os.getpid()}",
            interval=settings.timer_interval_seconds,
        )

        async def nats_ready() -> None:
            if not bus.connected:
                raise TransientError("not connected to NATS")

        async def definitions_ready() -> None:
            if not definitions.ready.is_set():
                raise TransientError("definitions not loaded")

        ops = HttpServer(
            ops_app({"nats": nats_ready, "store": store.ping, "definitions": definitions_ready}),
            host=settings.ops_host,
            port=settings.ops_port,
        )
        log.info("engine_starting")

        def consumer(stream: str, durable: str, subject: str, in_flight: int) -> ConsumerSpec:
            return ConsumerSpec(
                stream=stream,
                durable=durable,
                filter_subject=subject,
                max_deliver=settings.max_deliver,
                max_in_flight=in_flight,
            )

        async def consume_when_ready() -> None:
            await definitions.ready.wait()
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    bus.consume_batches(
                        ConsumerSpec(
                            stream=subjects.ALERTS_STREAM,
                            durable="engine",
                            filter_subject=subjects.all_alerts(),
                            max_deliver=settings.max_deliver,
                            max_in_flight=settings.alerts_in_flight,
                            batch=settings.alerts_batch,
                        ),
                        AlertReceived,
                        handlers.on_alerts,
                    )
                )
                group.create_task(
                    bus.consume_batches(
                        ConsumerSpec(
                            stream=subjects.RESULTS_STREAM,
                            durable="engine",
                            filter_subject=subjects.results(),
                            max_deliver=settings.max_deliver,
                            max_in_flight=settings.results_in_flight,
                            batch=settings.results_batch,
                        ),
                        StepResult,
                        handlers.on_results,
                    )
                )
                group.create_task(
                    bus.consume(
                        consumer(
                            subjects.CONTROL_STREAM, "engine-cancel", subjects.control("cancel"), 8
                        ),
                        CancelRequested,
                        handlers.on_cancel,
                    )
                )
                group.create_task(
                    bus.consume(
                        consumer(subjects.CONTROL_STREAM, "engine-run", subjects.control("run"), 8),
                        RunRequested,
                        handlers.on_run,
                    )
                )
                group.create_task(
                    bus.consume(
                        consumer(
                            subjects.DLQ_STREAM,
                            "engine-steps",
                            subjects.dlq(subjects.STEPS_STREAM, "*"),
                            8,
                        ),
                        DeadLetter,
                        handlers.on_dead_letter,
                    )
                )

        await run_tasks(
            stop,
            ops.serve(),
            definitions.run(await bus.config_bucket()),
            consume_when_ready(),
            timers.run(),
            purge_expired(store, every=settings.purge_interval_seconds, clock=_now),
        )
    finally:
        await bus.close()
        await store.close()
