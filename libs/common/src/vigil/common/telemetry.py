"""OpenTelemetry: a tracer provider per service, W3C trace context carried in NATS headers.

Export is configured by the standard `OTEL_*` variables: with `OTEL_EXPORTER_OTLP_ENDPOINT`
(or the traces-specific one) set, spans go to that collector over OTLP/HTTP; without it
spans are not recorded (nothing would read them) but still get their ids, so trace ids
reach logs, documents and the next hop's headers.

An execution outlives the message that started it (timers wake it, results come back in
batches): it keeps the W3C `traceparent` of its admission span, and every later dispatch
of its steps is parented there (`execution_context`), so one alert stays one trace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF


def configure_tracing(*, service: str) -> TracerProvider:
    """Install a global tracer provider for `service` and return it (to shut down).

    Without an OTLP endpoint nothing would read a span, so none is recorded (unless
    `OTEL_TRACES_SAMPLER` says otherwise): every span still gets its ids, which reach the
    logs, the execution documents and the next message's `traceparent`, at a quarter of
    the cost of a recorded one.
    """
    exporting = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}),
        sampler=None if exporting or os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF,
    )
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add `traceparent`/`tracestate` of the current span to `headers` (in place)."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message carried, for use as a span's parent."""
    return propagate.extract(dict(headers or {}))


def traceparent_of(span: trace.Span | None = None) -> str | None:
    """The W3C `traceparent` of `span` (the current span by default), to store with what
    outlives it; None when there is no valid span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=None if span is None else trace.set_span_in_context(span))
    return carrier.get("traceparent")


def message_context(headers: Mapping[str, str] | None) -> Context:
    """The parent for a span of work on one message of a batch: the current span when it is
    in the message's trace already (a batch of one), else the message's own context."""
    carried = extract_context(headers)
    wanted = trace.get_current_span(carried).get_span_context()
    current = trace.get_current_span().get_span_context()
    if current.is_valid and wanted.is_valid and current.trace_id == wanted.trace_id:
        return context.get_current()
    return carried


def execution_context(*, trace_id: str | None, traceparent: str | None) -> Context:
    """The parent for a span of work on an execution (a step's dispatch).

    The current span when it belongs to the execution's trace already (a result of the same
    alert, handled on its own); else the stored admission span (a timer's wake-up, a
    batch of many alerts' results); else the current context (an execution from before
    trace contexts were stored).
    """
    current = trace.get_current_span().get_span_context()
    if current.is_valid and trace_id is not None and f"{current.trace_id:032x}" == trace_id:
        return context.get_current()
    if traceparent:
        return propagate.extract({"traceparent": traceparent})
    return context.get_current()


def current_trace_id() -> str | None:
    span = trace.get_current_span().get_span_context()
    return f"{span.trace_id:032x}" if span.is_valid else None


# The URL attributes of an HTTP client span, in the old and the stable conventions.
_URL_ATTRIBUTES = ("http.url", "url.full")


def hide_url_path(span: trace.Span, request: Any) -> None:
    """An httpx instrumentation request hook: the span shows only the scheme, host and port
    of the URL. A Slack or Teams webhook URL carries its credential in the path, an agent's
    HTTP tool may call a URL with a token in its query: neither may reach a trace backend."""
    url = urlsplit(str(request.url))
    port = f":{url.port}" if url.port else ""
    shown = f"{url.scheme}://{url.hostname}{port}"
    recorded = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        if key in recorded:
            span.set_attribute(key, shown)


async def hide_url_path_async(span: trace.Span, request: Any) -> None:
    """`hide_url_path` for httpx's async clients."""
    hide_url_path(span, request)
