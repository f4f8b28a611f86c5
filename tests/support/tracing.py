"""An in-memory span exporter on the process-wide OpenTelemetry tracer provider.

OpenTelemetry lets the global provider be set once per process, so the exporter is installed
once (on an SDK provider someone else already installed, if there is one) and shared; tests
clear it before use.
"""

from __future__ import annotations

import functools

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@functools.cache
def install_span_exporter() -> InMemorySpanExporter:
    """Record every finished span of this process in memory; idempotent."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
