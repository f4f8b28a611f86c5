"""Ingest composition root: bus, store (read side), definitions view, source types, HTTP."""

from __future__ import annotations

import asyncio

import structlog

from vigil.common.adapters.ops import HttpServer
from vigil.common.adapters.service import connected_bus, opened_store, readiness_checks
from vigil.common.definitions import DefinitionsView
from vigil.common.runtime import run_tasks
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest
from vigil.ingest.settings import IngestSettings
from vigil.ingest.sources import SourceAdapters

log = structlog.get_logger(__name__)


def build_sources() -> SourceAdapters:
    """The adapter of each Source type whose webhooks this build reads."""
    return {"alertmanager": AlertmanagerSource()}


async def run(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with opened_store(settings) as store, connected_bus(settings, service="ingest") as bus:
        definitions = DefinitionsView()
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions,
            sources=build_sources(),
            max_body_bytes=settings.max_body_bytes,
        )
        app = build_app(
            ingest, checks=readiness_checks(bus=bus, store=store, definitions=definitions)
        )
        server = HttpServer(app, host=settings.http_host, port=settings.http_port)
        log.info("ingest_starting")
        await run_tasks(stop, server.serve(), definitions.run(await bus.config_bucket()))
