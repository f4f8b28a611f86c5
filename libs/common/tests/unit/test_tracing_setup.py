"""`configure_tracing` records spans only when they go somewhere, and never loses the ids.

Each case runs in a process of its own: OpenTelemetry lets the global provider be set once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json
from vigil.common.telemetry import configure_tracing, traceparent_of
provider = configure_tracing(service="probe")
span = provider.get_tracer("probe").start_span("probe")
context = span.get_span_context()
print(json.dumps({"recording": span.is_recording(), "valid": context.is_valid,
                  "traceparent": traceparent_of(span)}))
"""


def probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # An endpoint nobody listens on: the exporter only sends when a batch is due.
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "OTEL_BSP_SCHEDULE_DELAY": "600000", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_without_an_endpoint_spans_are_not_recorded_but_keep_their_ids() -> None:
    answer = probe()
    assert answer["recording"] is False
    assert answer["valid"] is True
    assert str(answer["traceparent"]).startswith("00-")


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"},
        {"OTEL_TRACES_SAMPLER": "always_on"},
    ],
    ids=["endpoint", "traces-endpoint", "explicit-sampler"],
)
def test_with_an_endpoint_or_a_chosen_sampler_spans_are_recorded(env: dict[str, str]) -> None:
    answer = probe(**env)
    assert answer["recording"] is True
    assert answer["valid"] is True
