"""Prometheus metrics more than one service records, defined once (a name can be
registered only once per process, and the test suite runs every service in one).

The step duration histogram: the executor observes cli and agent steps, the sink notify
steps; `kind` and `outcome` are closed sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client import Histogram

from vigil.common.messages import StepOutcome

# From a quick notification to an agent's investigation of several minutes.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

STEP_DURATION = Histogram(
    "vigil_step_duration_seconds",
    "Duration of a step attempt (run by the executor, or delivered by the sink), by kind and "
    "outcome.",
    ["kind", "outcome"],
    buckets=STEP_BUCKETS,
)


def start_timing(kinds: Iterable[str]) -> None:
    """Show the histogram of the step kinds this service runs before the first step: a
    series Prometheus first sees with a count of 1 has no rate, and the first step's
    duration would be missing from every quantile."""
    for kind in kinds:
        for outcome in get_args(StepOutcome):
            STEP_DURATION.labels(kind=kind, outcome=outcome)


def observe_step(*, kind: str, outcome: str, seconds: float) -> None:
    STEP_DURATION.labels(kind=kind, outcome=outcome).observe(seconds)
