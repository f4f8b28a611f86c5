"""Project-wide fixtures: real infrastructure on loopback for integration and e2e suites.

`nats_server` is one nats-server for the whole session (for suites that namespace their own
streams); `nats_url` is a fresh server per test, because Vigil's stream names (ALERTS,
STEPS, …) are fixed and a test must not see another test's messages or consumers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.mongo import running_mongoeco
from tests.support.nats import NatsServer, running_nats
from tests.support.tracing import install_span_exporter


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream shared by the whole session."""
    with running_nats(tmp_path_factory.mktemp("nats-session") / "jetstream") as server:
        yield server


@pytest.fixture
def fresh_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream of this test alone (stop, kill or restart it freely)."""
    with running_nats(tmp_path / "jetstream") as server:
        yield server


@pytest.fixture
def nats_url(fresh_nats_server: NatsServer) -> str:
    """URL of a fresh nats-server started for this test."""
    return fresh_nats_server.url


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB server URL (no database in it): `VIGIL_TEST_MONGODB_URL`, else mongoeco."""
    real = os.environ.get("VIGIL_TEST_MONGODB_URL")
    if real:
        yield real
        return
    with running_mongoeco(tmp_path_factory.mktemp("mongoeco-session")) as server:
        yield server.url


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """Finished spans of this test, recorded by an SDK tracer provider installed process-wide."""
    exporter = install_span_exporter()
    exporter.clear()
    return exporter
