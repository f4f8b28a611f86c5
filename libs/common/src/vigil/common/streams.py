"""The JetStream layout of DESIGN §3 as data: streams and the durable consumers on them.

Provisioned idempotently at start-up by whoever needs them (`JetStreamBus.ensure_streams`).
Every durable consumer is declared here once; a service tunes its limits from its settings
with `dataclasses.replace`, and the stats endpoint reports the lag of `MONITORED`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from vigil.common import subjects

DAY = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue"]
    max_age_seconds: float = 0.0
    duplicate_window_seconds: float = 120.0
    replicas: int = 1  # copies in a JetStream cluster (`VIGIL_STREAM_REPLICAS`)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_seconds: float = 30.0
    max_deliver: int = 5
    max_in_flight: int = 64
    batch: int = 64


ENGINE_ALERTS = ConsumerSpec(
    stream=subjects.ALERTS_STREAM, durable="engine", filter_subject=subjects.all_alerts()
)
ENGINE_RESULTS = ConsumerSpec(
    stream=subjects.RESULTS_STREAM, durable="engine", filter_subject=subjects.results()
)
ENGINE_CANCEL = ConsumerSpec(
    stream=subjects.CONTROL_STREAM,
    durable="engine-cancel",
    filter_subject=subjects.control("cancel"),
    max_in_flight=8,
)
ENGINE_RUN = ConsumerSpec(
    stream=subjects.CONTROL_STREAM,
    durable="engine-run",
    filter_subject=subjects.control("run"),
    max_in_flight=8,
)
# Step requests nobody could run: the engine fails their step with the reason.
ENGINE_DEAD_STEPS = ConsumerSpec(
    stream=subjects.DLQ_STREAM,
    durable="engine-steps",
    filter_subject=subjects.dlq(subjects.STEPS_STREAM, "*"),
    max_in_flight=8,
)
# Kubernetes mode: execution lifecycle events into each Workflow's status.
CONTROLLER_EVENTS = ConsumerSpec(
    stream=subjects.EVENTS_STREAM,
    durable="controller-status",
    filter_subject=subjects.all_events(),
    max_in_flight=256,
)
SINK_NOTIFY = ConsumerSpec(
    stream=subjects.STEPS_STREAM, durable="sink-notify", filter_subject=subjects.steps("notify")
)


def executor_steps(kind: str) -> ConsumerSpec:
    """The executor's consumer of one step kind (one per registered runner)."""
    return ConsumerSpec(
        stream=subjects.STEPS_STREAM,
        durable=f"executor-{kind}",
        filter_subject=subjects.steps(kind),
    )


EXECUTOR_CLI = executor_steps("cli")

# The consumers whose lag `/api/v1/stats` reports.
MONITORED = (ENGINE_ALERTS, ENGINE_RESULTS, EXECUTOR_CLI, SINK_NOTIFY)


def stream_specs(*, alerts_max_age_days: float = 7.0, replicas: int = 1) -> tuple[StreamSpec, ...]:
    """Every stream of DESIGN §3, each kept in `replicas` copies."""
    return tuple(replace(spec, replicas=replicas) for spec in _streams(alerts_max_age_days))


def _streams(alerts_max_age_days: float) -> tuple[StreamSpec, ...]:
    return (
        StreamSpec(
            name=subjects.ALERTS_STREAM,
            subjects=(subjects.all_alerts(),),
            retention="limits",
            max_age_seconds=alerts_max_age_days * DAY,
            # Alertmanager re-sends a group every group_interval (5 min by default), and
            # HA pairs send twice: keep ids long enough to deduplicate both.
            duplicate_window_seconds=20 * 60.0,
        ),
        StreamSpec(
            name=subjects.STEPS_STREAM,
            subjects=(subjects.all_steps(),),
            retention="workqueue",
            duplicate_window_seconds=20 * 60.0,
        ),
        StreamSpec(
            name=subjects.RESULTS_STREAM,
            subjects=(subjects.results(),),
            retention="workqueue",
            duplicate_window_seconds=20 * 60.0,
        ),
        StreamSpec(
            name=subjects.EVENTS_STREAM,
            subjects=(subjects.all_events(),),
            retention="limits",
            max_age_seconds=1 * DAY,
        ),
        StreamSpec(
            name=subjects.CONTROL_STREAM,
            subjects=(subjects.all_control(),),
            retention="workqueue",
            duplicate_window_seconds=20 * 60.0,
        ),
        StreamSpec(
            name=subjects.DLQ_STREAM,
            subjects=(subjects.all_dlq(),),
            retention="limits",
            max_age_seconds=14 * DAY,
        ),
    )
