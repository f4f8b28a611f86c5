"""The MongoDB store's commands in the trace that caused them: `open_store` instruments
PyMongo, so a read made inside a span is a client span of that span's trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from tests.support.documents import RETENTION
from tests.support.mongo import drop_database, with_database
from tests.support.tracing import install_span_exporter
from vigil.common.adapters.stores import open_store


@pytest.fixture
def mongo_store_url(mongodb_url: str) -> Iterator[str]:
    url = with_database(mongodb_url, f"vigil_test_{uuid.uuid4().hex}")
    yield url
    drop_database(url)


async def test_a_mongodb_read_is_a_client_span_in_the_current_trace(mongo_store_url: str) -> None:
    spans = install_span_exporter()
    store = await open_store(mongo_store_url, retention=RETENTION)
    try:
        spans.clear()
        with trace.get_tracer("test").start_as_current_span("handle message") as parent:
            assert await store.get_execution("01NOPE") is None
    finally:
        await store.close()

    commands = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    (find,) = [c for c in commands if c.name.endswith(".find")]
    assert find.parent is not None
    assert find.parent.span_id == parent.get_span_context().span_id
    assert dict(find.attributes or {}).get("db.system") == "mongodb"
