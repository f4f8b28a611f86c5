"""The JetStream layout of DESIGN §3 as data: streams and the durable consumers on them.

Provisioned idempotently at start-up by whoever needs them (`JetStreamBus.ensure_streams`).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_seconds: float = 30.0
    max_deliver: int = 5
    max_in_flight: int = 64
    batch: int = 64


def stream_specs(*, alerts_max_age_days: float = 7.0) -> tuple[StreamSpec, ...]:
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
