"""Webhooks in: `POST /hooks/{namespace}/{source}`.

Status codes are promises to Alertmanager: 2xx only after JetStream acknowledged every alert
of the body; 5xx when that could not be ensured (Alertmanager retries); 4xx, with a message
naming the problem, when the request itself is wrong (Alertmanager drops it), which is
also the answer to a body that could never be accepted (too large, an alert over the
limits of `vigil.ingest.alert_limits` or over the bus's largest message). A Source whose
Secret cannot be resolved lets no request through: one bringing credentials gets a 503
naming the Secret (ours to fix; Alertmanager retries meanwhile), one without a 401. The
body is read by the adapter of the Source's type (`vigil.ingest.sources`).

A body is accepted or refused whole: every check, sizes included, runs on the whole body
before anything is published, so a 4xx stored nothing. A 503 may have stored some of the
alerts; the retry it asks for stores the rest, each alert once (`Nats-Msg-Id`). Every
refusal is counted by reason (`vigil.ingest.rejections`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from vigil.common.bus import ConsumerStatsSource, Outgoing, Publisher
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import Definition, DefinitionsView
from vigil.common.errors import InvalidInput, MessageTooLarge, TransientError
from vigil.common.resources import Source
from vigil.common.secrets import SecretResolver, SecretUnavailable
from vigil.common.store import Store
from vigil.ingest.alert_limits import AlertLimits, AlertTooLarge, check_alert_sizes
from vigil.ingest.alerts import alert_messages
from vigil.ingest.auth import authorized, signature_problem
from vigil.ingest.rejections import Reason, count_rejection
from vigil.ingest.sources import SourceAdapter, SourceAdapters

log = structlog.get_logger(__name__)

ALERTS_RECEIVED = Counter(
    "vigil_alerts_received_total", "Alerts accepted (acknowledged by JetStream)."
)
ALERTS_DEDUPLICATED = Counter(
    "vigil_alerts_deduplicated_total", "Accepted alerts JetStream already had (re-sends)."
)


INLINE_READ_BYTES = 64 * 1024  # a body up to this is read on the loop (a thread costs more)
SECRET_RETRY_AFTER_SECONDS = 5  # a rotation in flight, or the controller withdrawing the Source


class IngestBus(Publisher, ConsumerStatsSource, Protocol):
    """What ingest needs of the bus: publishing, and the consumers' lag for `/stats`."""


def error_response(status: int, reason: Reason, message: str) -> JSONResponse:
    count_rejection(reason)
    return JSONResponse({"error": message}, status_code=status)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingest:
    bus: IngestBus
    store: Store
    definitions: DefinitionsView
    sources: SourceAdapters
    secrets: SecretResolver
    max_body_bytes: int
    alert_limits: AlertLimits = field(default_factory=AlertLimits)
    clock: Clock = SYSTEM_CLOCK
    trace_url: str | None = None  # a trace UI's URL with `{trace_id}` (VIGIL_TRACE_URL)

    async def receive(self, namespace: str, source: str, request: Request) -> JSONResponse:
        checked = await self._check_request(namespace, source, request)
        if isinstance(checked, JSONResponse):
            return checked
        definition, adapter = checked
        body = await self._bounded_body(request)
        if body is None:
            return error_response(
                413, "too_large", f"body is larger than {self.max_body_bytes} bytes"
            )
        refused = await self._check_signature(definition, body, request)
        if refused is not None:
            return refused
        document = _parsed(body)
        if isinstance(document, JSONResponse):
            return document
        try:
            if len(body) > INLINE_READ_BYTES:
                # Reading costs in proportion to the body (a webhook mapping's CEL, the
                # Alertmanager model): a large one is read off the event loop.
                batch = await asyncio.to_thread(adapter.read, document, source=definition)
            else:
                batch = adapter.read(document, source=definition)
            check_alert_sizes(batch, self.alert_limits)
        except AlertTooLarge as exc:
            return error_response(413, exc.reason, str(exc))
        except InvalidInput as exc:
            return error_response(422, "invalid_payload", str(exc))
        messages = alert_messages(
            batch, namespace=namespace, source=source, received_at=self.clock.now()
        )
        return await self._publish(namespace, source, messages)

    async def _check_request(
        self, namespace: str, source: str, request: Request
    ) -> tuple[Definition, SourceAdapter] | JSONResponse:
        """What can be refused before the body is read: the Source and the media type."""
        if not self.definitions.ready.is_set():
            return error_response(503, "not_ready", "definitions are not loaded yet; retry shortly")
        definition = self.definitions.source_definition(namespace, source)
        if definition is None:
            return error_response(
                404, "unknown_source", f"no Source {namespace}/{source} is defined"
            )
        resource = definition.resource
        assert isinstance(resource, Source), "source_definition returns Sources only"
        if resource.spec.type == "schedule":
            return error_response(
                405,
                "no_route",
                f"Source {namespace}/{source} is a schedule: the engine fires it at its ticks,"
                " nothing can be posted to it",
            )
        authorization = request.headers.get("authorization")
        try:
            allowed = await authorized(resource, authorization, secrets=self.secrets)
        except SecretUnavailable as exc:
            return _secret_unavailable(namespace, source, exc)
        if not allowed:
            return error_response(
                401, "unauthorized", f"Source {namespace}/{source} requires valid credentials"
            )
        adapter = self.sources.get(resource.spec.type)
        if adapter is None:
            return error_response(
                501,
                "source_type_unavailable",
                f"Source type {resource.spec.type} is not available in this build",
            )
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            return error_response(
                415,
                "unsupported_media_type",
                f"body must be application/json, not {media_type or 'untyped'}",
            )
        return definition, adapter

    async def _check_signature(
        self, definition: Definition, body: bytes, request: Request
    ) -> JSONResponse | None:
        """The 401 for a body whose HMAC signature the Source asks for and does not get."""
        resource = definition.resource
        assert isinstance(resource, Source), "source_definition returns Sources only"
        namespace, source = resource.metadata.namespace, resource.metadata.name
        try:
            problem = await signature_problem(
                resource, body, request.headers, secrets=self.secrets, now=self.clock.now()
            )
        except SecretUnavailable as exc:
            return _secret_unavailable(namespace, source, exc)
        if problem is None:
            return None
        log.warning("source_signature_refused", namespace=namespace, source=source, problem=problem)
        return error_response(401, "unauthorized", f"Source {namespace}/{source}: {problem}")

    async def _publish(self, namespace: str, source: str, messages: list[Outgoing]) -> JSONResponse:
        try:
            new = await self.bus.publish_all(messages)
        except MessageTooLarge as exc:
            return error_response(
                413,
                "over_max_payload",
                f"alerts[{exc.index}] is {exc.size} bytes as a message, over the bus's "
                f"largest message ({exc.limit} bytes): shorten its labels, annotations or "
                "URLs; nothing of this body was stored",
            )
        except TransientError as exc:
            log.warning("alerts_not_accepted", source=source, error=str(exc))
            response = error_response(
                503, "not_stored", f"alerts could not be stored durably: {exc}"
            )
            response.headers["Retry-After"] = "1"
            return response
        ALERTS_RECEIVED.inc(len(messages))
        ALERTS_DEDUPLICATED.inc(len(messages) - new)
        # Debug, not info: one line per request cost ~13% of ingest's CPU at 600 requests/s
        # (and as much again in whoever relays stdout); the counters above say the same.
        log.debug(
            "alerts_accepted", namespace=namespace, source=source, alerts=len(messages), new=new
        )
        return JSONResponse({"accepted": len(messages), "new": new}, status_code=200)

    async def _bounded_body(self, request: Request) -> bytes | None:
        """The body, or None once it is over the limit: refused on its declared length
        before reading, else read no further than the limit."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                return None
        return bytes(body)


def _secret_unavailable(namespace: str, source: str, exc: SecretUnavailable) -> JSONResponse:
    log.error("source_secret_unavailable", namespace=namespace, source=source, error=str(exc))
    response = error_response(
        503,
        "secret_unavailable",
        f"Source {namespace}/{source} cannot check credentials: its {exc.secret.secret}"
        " is unavailable; retry later",
    )
    response.headers["Retry-After"] = str(SECRET_RETRY_AFTER_SECONDS)
    return response


def _parsed(body: bytes) -> object:
    """The JSON document of `body`, or the 400 naming why it is not one."""
    try:
        document: object = json.loads(body)
        # A lone surrogate (\ud800) is valid JSON but no Unicode text: refuse it here. In
        # UTF-8 (no NUL byte; UTF-16/32 JSON always has some) only a `\u` escape or the
        # bytes ED A0-BF (json decodes with surrogatepass) can make one, so a body with
        # neither is not encoded again (~2% of a one-alert request's CPU).
        if b"\\u" in body or b"\x00" in body or b"\xed" in body:
            json.dumps(document, ensure_ascii=False).encode()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error_response(400, "bad_json", f"body is not valid JSON: {exc}")
    except UnicodeEncodeError:
        return error_response(
            400, "invalid_unicode", "body holds invalid Unicode (a lone surrogate)"
        )
    except RecursionError:
        return error_response(400, "too_deep", "body is nested too deeply")
    return document
