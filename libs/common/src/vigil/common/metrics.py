"""Prometheus metrics more than one service records, defined once (a name can be
registered only once per process, and the test suite runs every service in one).

The step duration histogram: the executor observes cli and agent steps, the sink notify
steps; `kind` and `outcome` are closed sets.
"""

from __future__ import annotations

from prometheus_client import Histogram

# From a quick notification to an agent's investigation of several minutes.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

STEP_DURATION = Histogram(
    "vigil_step_duration_seconds",
    "Duration of a step attempt (run by the executor, or delivered by the sink), by kind and "
    "outcome.",
    ["kind", "outcome"],
    buckets=STEP_BUCKETS,
)


def observe_step(*, kind: str, outcome: str, seconds: float) -> None:
    STEP_DURATION.labels(kind=kind, outcome=outcome).observe(seconds)
