"""Ingest composition root: bus, store (read side), definitions view, HTTP server."""

from __future__ import annotations

import asyncio

import structlog

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.ops import HttpServer
from vigil.common.runtime import run_tasks
from vigil.common.store import open_store
from vigil.common.streams import stream_specs
from vigil.ingest.api import Ingest, build_app
from vigil.ingest.settings import IngestSettings

log = structlog.get_logger(__name__)


async def run(settings: IngestSettings, stop: asyncio.Event) -> None:
    store = await open_store(settings.store_url, retention=settings.retention())
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-ingest")
    try:
        await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
        definitions = DefinitionsView()

        async def nats_ready() -> None:
            if not bus.connected:
                raise TransientError("not connected to NATS")

        async def definitions_ready() -> None:
            if not definitions.ready.is_set():
                raise TransientError("definitions not loaded")

        ingest = Ingest(
            bus=bus, store=store, definitions=definitions, max_body_bytes=settings.max_body_bytes
        )
        app = build_app(
            ingest,
            checks={"nats": nats_ready, "store": store.ping, "definitions": definitions_ready},
        )
        server = HttpServer(app, host=settings.http_host, port=settings.http_port)
        log.info("ingest_starting")
        await run_tasks(stop, server.serve(), definitions.run(await bus.config_bucket()))
    finally:
        await bus.close()
        await store.close()
