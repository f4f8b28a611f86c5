"""Sink composition root: the notifiers by sink type (with the Secret resolver they read
webhook URLs and tokens through, and the links of the default report), the delivery loop,
the notify consumer."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import httpx
import structlog
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from vigil.common import streams
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.service import (
    connected_bus,
    opened_store,
    ops_server,
    readiness_checks,
    secret_resolver,
)
from vigil.common.definitions import DefinitionsView
from vigil.common.messages import StepRequest
from vigil.common.runtime import run_tasks
from vigil.common.secrets import SecretResolver
from vigil.common.telemetry import hide_url_path, hide_url_path_async
from vigil.sink.adapters.aio_posting import USER_AGENT, new_session
from vigil.sink.adapters.log import LogNotifier
from vigil.sink.adapters.msteams import TeamsNotifier
from vigil.sink.adapters.pagerduty import PagerDutyNotifier
from vigil.sink.adapters.slack import SlackNotifier
from vigil.sink.adapters.smtp import EmailNotifier
from vigil.sink.adapters.webhook import WebhookNotifier
from vigil.sink.delivering import DeliveryLoop, RetryPolicy
from vigil.sink.handlers import SinkHandlers
from vigil.sink.notifiers import Notifiers
from vigil.sink.report import ReportLinks
from vigil.sink.settings import SinkSettings

log = structlog.get_logger(__name__)


def build_notifiers(
    client: httpx.AsyncClient,
    session: aiohttp.ClientSession,
    *,
    secrets: SecretResolver,
    settings: SinkSettings,
) -> Notifiers:
    """The notifier of each sink type this build delivers to: the webhook's on aiohttp
    (`adapters/aio_posting`: a tenth of httpx's CPU per request), the others on httpx."""
    links = ReportLinks(public_url=settings.public_url, trace_url=settings.trace_url)
    return {
        "log": LogNotifier(links=links),
        "webhook": WebhookNotifier(session, secrets=secrets, links=links),
        "slack": SlackNotifier(
            client, secrets=secrets, links=links, api_url=settings.slack_api_url
        ),
        "msteams": TeamsNotifier(client, secrets=secrets, links=links),
        "pagerduty": PagerDutyNotifier(client, secrets=secrets, links=links),
        "email": EmailNotifier(secrets=secrets, links=links),
    }


async def run(settings: SinkSettings, stop: asyncio.Event) -> None:
    trace_http_requests()
    async with (
        opened_store(settings) as store,
        connected_bus(settings, service="sink") as bus,
        httpx.AsyncClient(headers={"User-Agent": USER_AGENT}) as client,
        new_session() as session,
        secret_resolver(settings) as secrets,
    ):
        definitions = DefinitionsView()
        handlers = SinkHandlers(
            bus=bus,
            definitions=definitions,
            deliveries=DeliveryLoop(
                store=store,
                notifiers=build_notifiers(client, session, secrets=secrets, settings=settings),
                policy=RetryPolicy(
                    attempts=settings.attempts,
                    backoff=settings.backoff_seconds,
                    max_backoff=settings.max_backoff_seconds,
                    jitter=settings.jitter,
                    deadline=settings.deadline_seconds,
                ),
            ),
        )
        log.info("sink_starting")
        await run_tasks(
            stop,
            ops_server(
                settings, readiness_checks(bus=bus, store=store, definitions=definitions)
            ).serve(),
            definitions.run(await bus.config_bucket()),
            _consume_when_ready(settings, bus, definitions, handlers),
        )


async def _consume_when_ready(
    settings: SinkSettings, bus: JetStreamBus, definitions: DefinitionsView, handlers: SinkHandlers
) -> None:
    await definitions.ready.wait()
    await bus.consume(
        replace(
            streams.SINK_NOTIFY,
            max_deliver=settings.max_deliver,
            max_in_flight=settings.deliveries_in_flight,
            batch=settings.deliveries_in_flight,
        ),
        StepRequest,
        handlers.on_notify,
    )


def trace_http_requests() -> None:
    """Every httpx request of this process in a client span of the current trace (httpx's
    client classes are patched, so once per process)."""
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # Only scheme, host and port of each URL: a path or query may hold a credential.
        instrumentor.instrument(request_hook=hide_url_path, async_request_hook=hide_url_path_async)
