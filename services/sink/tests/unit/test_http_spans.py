"""The sink's HTTP client spans (httpx instrumented by `trace_http_requests`) against a real
HTTP server on loopback: a delivery's request is a child of the current span and carries
its `traceparent`, and its span shows the receiver's scheme, host and port only — a Slack or
Teams webhook URL holds its credential in the path, a query may hold a token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from tests.support.nats import free_port
from tests.support.platform import WebhookReceiver
from tests.support.tracing import install_span_exporter
from vigil.sink.adapters.aio_posting import new_session
from vigil.sink.adapters.webhook import post_json
from vigil.sink.app import trace_http_requests

SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def instrumented() -> Iterator[None]:
    """httpx instrumented as the sink does it, for this test only: left on, every later
    test's requests in this process would carry a `traceparent` of this process."""
    trace_http_requests()
    yield
    HTTPXClientInstrumentor().uninstrument()


@pytest.mark.usefixtures("instrumented")
async def test_a_delivery_request_span_hides_the_url_path_and_query(
    receiver: WebhookReceiver,
) -> None:
    spans = install_span_exporter()
    spans.clear()
    url = f"http://127.0.0.1:{receiver.port}{SECRET_PATH}?token=hunter2"

    with trace.get_tracer("test").start_as_current_span("deliver webhook") as parent:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json={"title": "DiskFull"})
    assert answer.status_code == 204

    (post,) = [s for s in spans.get_finished_spans() if s.name == "POST"]
    assert post.parent is not None
    assert post.parent.span_id == parent.get_span_context().span_id
    attributes = dict(post.attributes or {})
    shown = {k: v for k, v in attributes.items() if k in ("http.url", "url.full")}
    assert shown, attributes  # the instrumentation records a URL, and it is the short one
    assert set(shown.values()) == {f"http://127.0.0.1:{receiver.port}"}
    assert not [v for v in attributes.values() if "secret" in str(v) or "hunter2" in str(v)]
    (received,) = receiver.posts
    assert received.path == f"{SECRET_PATH}?token=hunter2"
    trace_id = f"{post.context.trace_id:032x}"
    assert received.headers["traceparent"].split("-")[1] == trace_id


async def test_a_webhook_post_span_hides_the_url_path_and_carries_the_trace(
    receiver: WebhookReceiver,
) -> None:
    """The webhook sink posts with aiohttp (`adapters/aio_posting`), traced by hand: the same
    span name, the same short URL, the same `traceparent` as the httpx instrumentation."""
    spans = install_span_exporter()
    spans.clear()
    url = f"http://127.0.0.1:{receiver.port}{SECRET_PATH}?token=hunter2"

    with trace.get_tracer("test").start_as_current_span("deliver webhook") as parent:
        async with new_session() as session:
            status = await post_json(
                session, url, {"title": "DiskFull"}, idempotency_key="k", headers={}, timeout=5
            )
    assert status == 204

    (post,) = [s for s in spans.get_finished_spans() if s.name == "POST"]
    assert post.kind == trace.SpanKind.CLIENT
    assert post.parent is not None
    assert post.parent.span_id == parent.get_span_context().span_id
    attributes = dict(post.attributes or {})
    assert attributes["url.full"] == f"http://127.0.0.1:{receiver.port}"
    assert attributes["http.response.status_code"] == 204
    assert not [v for v in attributes.values() if "secret" in str(v) or "hunter2" in str(v)]
    (received,) = receiver.posts
    assert received.path == f"{SECRET_PATH}?token=hunter2"
    assert received.headers["traceparent"].split("-")[1] == f"{post.context.trace_id:032x}"
    assert received.headers["user-agent"] == "vigil-sink"
