"""Prometheus metrics of the durable consumers: how each message ended, redeliveries,
dead letters (counted by `JetStreamBus` in every consuming service), and how far each
consumer is behind its stream (read from the bus by ingest, on each scrape).

Labels are the stream and the consumer's durable name (the engine's consumers of `ALERTS`
and `RESULTS` share the name `engine`): a fixed set (`vigil.common.streams`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from prometheus_client import Counter, Gauge

from vigil.common.bus import ConsumerStatsSource
from vigil.common.errors import TransientError
from vigil.common.streams import ConsumerSpec

log = structlog.get_logger(__name__)

# The whole refresh before a scrape: well inside Prometheus's default 10 s scrape timeout.
LAG_REFRESH_TIMEOUT_SECONDS = 2.0

MESSAGES_SETTLED = Counter(
    "vigil_messages_settled_total",
    "Messages a consumer settled, by how: ack (done), nak (redelivered later), term (dropped).",
    ["stream", "consumer", "action"],
)
REDELIVERIES = Counter(
    "vigil_redeliveries_total",
    "Messages delivered again to a consumer (a nak, a crash, or an ack wait that passed).",
    ["stream", "consumer"],
)
DEAD_LETTERS = Counter(
    "vigil_dead_letters_total",
    "Messages a consumer gave up on and published to the DLQ stream.",
    ["stream", "consumer"],
)
CONSUMER_LAG = Gauge(
    "vigil_consumer_lag",
    "Messages of the stream the consumer has not finished: not yet delivered plus in flight.",
    ["stream", "consumer"],
)
CONSUMER_PENDING = Gauge(
    "vigil_consumer_pending",
    "Messages of the stream not yet delivered to the consumer.",
    ["stream", "consumer"],
)


def start_counting(spec: ConsumerSpec) -> None:
    """Show the consumer's counters at 0 before anything happens: a rate() of a series that
    does not exist yet is no data, where a dashboard should show 0."""
    REDELIVERIES.labels(stream=spec.stream, consumer=spec.durable)
    DEAD_LETTERS.labels(stream=spec.stream, consumer=spec.durable)
    for action in ("ack", "nak", "term"):
        MESSAGES_SETTLED.labels(stream=spec.stream, consumer=spec.durable, action=action)


def count_delivery(spec: ConsumerSpec, delivery: int) -> None:
    """A message arrived at the consumer for the `delivery`-th time (1: the first)."""
    if delivery > 1:
        REDELIVERIES.labels(stream=spec.stream, consumer=spec.durable).inc()


def count_settled(spec: ConsumerSpec, action: str) -> None:
    MESSAGES_SETTLED.labels(stream=spec.stream, consumer=spec.durable, action=action).inc()


def count_dead_letter(spec: ConsumerSpec) -> None:
    DEAD_LETTERS.labels(stream=spec.stream, consumer=spec.durable).inc()


async def refresh_consumer_lag(
    source: ConsumerStatsSource,
    specs: Iterable[ConsumerSpec],
    *,
    timeout: float = LAG_REFRESH_TIMEOUT_SECONDS,
) -> None:
    """Set the lag gauges of `specs` from the bus, asking for all at once and waiting
    `timeout` seconds at most; a consumer the bus cannot report on in time keeps its last
    value (and says so in the log): a scrape must neither fail nor outlast Prometheus's
    scrape timeout for it while NATS is unreachable."""

    async def refresh(spec: ConsumerSpec) -> None:
        try:
            async with asyncio.timeout(timeout):
                stats = await source.consumer_stats(spec.stream, spec.durable)
        except (TransientError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {timeout} s"
            log.warning("consumer_lag_unknown", consumer=spec.durable, error=reason)
            return
        if not stats.exists:
            return
        labels = {"stream": spec.stream, "consumer": spec.durable}
        CONSUMER_LAG.labels(**labels).set(stats.lag)
        CONSUMER_PENDING.labels(**labels).set(stats.pending)

    await asyncio.gather(*(refresh(spec) for spec in specs))
