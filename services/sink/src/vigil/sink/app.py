"""Sink composition root: bus, definitions view, HTTP client, the notify consumer."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.messages import StepRequest
from vigil.common.ops import HttpServer, ops_app
from vigil.common.runtime import run_tasks
from vigil.common.store import open_store
from vigil.common.streams import ConsumerSpec, stream_specs
from vigil.sink.adapters.webhook import WebhookSender
from vigil.sink.handlers import SinkHandlers
from vigil.sink.settings import SinkSettings

log = structlog.get_logger(__name__)


async def run(settings: SinkSettings, stop: asyncio.Event) -> None:
    store = await open_store(settings.store_url, retention=settings.retention())
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-sink")
    try:
        async with httpx.AsyncClient(headers={"User-Agent": "vigil-sink"}) as client:
            await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
            definitions = DefinitionsView()
            handlers = SinkHandlers(
                bus=bus,
                store=store,
                definitions=definitions,
                webhook=WebhookSender(
                    client, attempts=settings.attempts, backoff=settings.backoff_seconds
                ),
            )

            async def nats_ready() -> None:
                if not bus.connected:
                    raise TransientError("not connected to NATS")

            async def definitions_ready() -> None:
                if not definitions.ready.is_set():
                    raise TransientError("definitions not loaded")

            ops = HttpServer(
                ops_app(
                    {"nats": nats_ready, "store": store.ping, "definitions": definitions_ready}
                ),
                host=settings.ops_host,
                port=settings.ops_port,
            )
            log.info("sink_starting")

            async def consume_when_ready() -> None:
                await definitions.ready.wait()
                await bus.consume(
                    ConsumerSpec(
                        stream=subjects.STEPS_STREAM,
                        durable="sink-notify",
                        filter_subject=subjects.steps("notify"),
                        max_deliver=settings.max_deliver,
                        max_in_flight=settings.deliveries_in_flight,
                        batch=settings.deliveries_in_flight,
                    ),
                    StepRequest,
                    handlers.on_notify,
                )

            await run_tasks(
                stop, ops.serve(), definitions.run(await bus.config_bucket()), consume_when_ready()
            )
    finally:
        await bus.close()
        await store.close()
