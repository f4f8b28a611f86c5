"""Engine composition root: store, bus, definitions view, two consumers, ops server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.messages import AlertReceived, StepResult
from vigil.common.ops import HttpServer, ops_app
from vigil.common.runtime import run_tasks
from vigil.common.store import Store, open_store
from vigil.common.streams import ConsumerSpec, stream_specs
from vigil.engine.handlers import EngineHandlers
from vigil.engine.settings import EngineSettings

log = structlog.get_logger(__name__)


async def purge_expired(store: Store, *, every: float) -> None:
    """Retention for stores without TTL indexes (SQLite); harmless where they exist."""
    while True:
        try:
            removed = await store.purge(datetime.now(UTC))
        except TransientError as exc:
            log.warning("purge_failed", error=str(exc))
        else:
            if removed:
                log.info("expired_documents_purged", count=removed)
        await asyncio.sleep(every)


async def run(settings: EngineSettings, stop: asyncio.Event) -> None:
    store = await open_store(settings.store_url, retention=settings.retention())
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-engine")
    try:
        await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
        definitions = DefinitionsView()
        handlers = EngineHandlers(store=store, bus=bus, definitions=definitions)

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
        log.info("engine_starting", ops_port=ops.port)

        async def consume_when_ready() -> None:
            await definitions.ready.wait()
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    bus.consume(
                        ConsumerSpec(
                            stream=subjects.ALERTS_STREAM,
                            durable="engine",
                            filter_subject=subjects.all_alerts(),
                            max_deliver=settings.max_deliver,
                            max_in_flight=settings.alerts_in_flight,
                        ),
                        AlertReceived,
                        handlers.on_alert,
                    )
                )
                group.create_task(
                    bus.consume(
                        ConsumerSpec(
                            stream=subjects.RESULTS_STREAM,
                            durable="engine",
                            filter_subject=subjects.results(),
                            max_deliver=settings.max_deliver,
                            max_in_flight=settings.results_in_flight,
                        ),
                        StepResult,
                        handlers.on_result,
                    )
                )

        await run_tasks(
            stop,
            ops.serve(),
            definitions.run(await bus.config_bucket()),
            consume_when_ready(),
            purge_expired(store, every=settings.purge_interval_seconds),
        )
    finally:
        await bus.close()
        await store.close()
