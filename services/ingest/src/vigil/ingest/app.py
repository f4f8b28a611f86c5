"""Ingest composition root: bus, store (read side), definitions view, Secret resolver
(Sources' credentials), source types, HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from vigil.common import subjects
from vigil.common.adapters.ops import HttpServer
from vigil.common.adapters.service import (
    connected_bus,
    opened_store,
    readiness_checks,
    secret_resolver,
)
from vigil.common.definitions import DefinitionsView
from vigil.common.messages import ExecutionEvent
from vigil.common.runtime import run_tasks
from vigil.ingest.access import FixedTokens, TokenFile, TokenSource, TokenTable
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.adapters.webhook import WebhookSource
from vigil.ingest.api import build_app
from vigil.ingest.console.live import LiveEvents
from vigil.ingest.hooks import Ingest
from vigil.ingest.rejections import count_rejection
from vigil.ingest.settings import IngestSettings
from vigil.ingest.sources import SourceAdapters

log = structlog.get_logger(__name__)


def build_sources(settings: IngestSettings) -> SourceAdapters:
    """The adapter of each Source type whose webhooks this build reads."""
    return {
        "alertmanager": AlertmanagerSource(),
        "webhook": WebhookSource(max_alerts=settings.max_webhook_alerts),
    }


async def run(settings: IngestSettings, stop: asyncio.Event) -> None:
    tokens = api_tokens(settings)  # a bad tokens file stops the service before it connects
    async with (
        opened_store(settings) as store,
        connected_bus(settings, service="ingest") as bus,
        secret_resolver(settings) as secrets,
    ):
        definitions = DefinitionsView()
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions,
            sources=build_sources(settings),
            secrets=secrets,
            max_body_bytes=settings.max_body_bytes,
            alert_limits=settings.alert_limits(),
            trace_url=settings.trace_url,
        )
        guarding: list[Coroutine[Any, Any, None]] = []
        if tokens is None:
            guarding.append(_warn_open_api(settings.http_host, settings.http_port))
        elif isinstance(tokens, TokenFile):
            guarding.append(tokens.watch())
        live = LiveEvents()
        app = build_app(
            ingest,
            checks=readiness_checks(bus=bus, store=store, definitions=definitions),
            tokens=tokens,
            live=live,
        )
        server = HttpServer(
            app,
            host=settings.http_host,
            port=settings.http_port,
            limits=settings.http_limits(),
            on_reject=count_rejection,
        )
        log.info("ingest_starting")
        await run_tasks(
            stop,
            server.serve(),
            definitions.run(await bus.config_bucket()),
            # The console's live pages: execution events as the engine publishes them,
            # heard while a page is open.
            live.follow(
                lambda ready: bus.listen(
                    subjects.all_events(), ExecutionEvent, live.on_event, ready=ready
                )
            ),
            *guarding,
        )


def api_tokens(settings: IngestSettings) -> TokenSource | None:
    """Who may call the API; None when auth is off."""
    if settings.api_auth == "none":
        return None
    fixed = (
        TokenTable.of(settings.api_token.get_secret_value())
        if settings.api_token is not None
        else TokenTable()
    )
    if settings.api_tokens_file is None:
        return FixedTokens(fixed)
    tokens = TokenFile(path=settings.api_tokens_file, fixed=fixed)
    tokens.load()
    return tokens


async def _warn_open_api(host: str, port: int) -> None:
    while True:
        log.warning(
            "api_auth_disabled",
            detail="anyone who can reach this port can read executions, run and cancel them",
            host=host,
            port=port,
        )
        await asyncio.sleep(60)
