"""An OTLP/HTTP trace collector in the test process: a real HTTP server on loopback that
takes `POST /v1/traces` (protobuf, gzip or not), decodes it with `opentelemetry-proto`
and keeps every span with the service that sent it.

Point a service at it with `OTEL_EXPORTER_OTLP_ENDPOINT=<collector.endpoint>`; tests wait
on the spans they expect (`wait_for`), never on time.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.http_fake import FakeHTTPServer, Received, Reply
from tests.support.nats import free_port


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    kind: int  # opentelemetry.proto's Span.SpanKind
    attributes: dict[str, str]  # every attribute's value as text


def decoded(body: bytes) -> list[ReceivedSpan]:
    """The spans of one OTLP export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        service = attributes.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                ReceivedSpan(
                    service=service,
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    attributes={a.key: _text(a.value) for a in span.attributes},
                )
                for span in scope_spans.spans
            )
    return spans


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


@dataclass(slots=True, kw_only=True)
class TraceCollector:
    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    bad_requests: list[str] = field(default_factory=list)
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer, port=self.port)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, request: Received) -> Reply:
        if request.method != "POST" or request.path != "/v1/traces":
            self.bad_requests.append(f"{request.method} {request.path}")
            return Reply(status=404)
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.spans.extend(decoded(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        return Reply(status=200, body=answer, content_type="application/x-protobuf")

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._server.arrived:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, trace_id: str, done: Callable[[list[ReceivedSpan]], bool], *, timeout: float
    ) -> list[ReceivedSpan]:
        """The spans of `trace_id` once `done(spans)` holds; after `timeout` seconds, the
        spans so far (the caller's assertions then say what is missing)."""
        self._server.wait_until(
            lambda: done([s for s in self.spans if s.trace_id == trace_id]), timeout=timeout
        )
        return self.of_trace(trace_id)


@contextmanager
def collecting() -> Iterator[TraceCollector]:
    collector = TraceCollector(port=free_port())
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
