"""`refresh_consumer_lag` before a scrape: every consumer asked at once, and a bus that does
not answer costs the scrape at most the timeout, keeping the last values."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from vigil.common import streams
from vigil.common.adapters.consumer_metrics import refresh_consumer_lag
from vigil.common.bus import ConsumerStats


class HangingForOne:
    """Answers every consumer but `ALERTS`/`engine`, for which it never answers."""

    async def consumer_stats(self, stream: str, durable: str) -> ConsumerStats:
        if (stream, durable) == ("ALERTS", "engine"):
            await asyncio.Event().wait()
        return ConsumerStats(stream=stream, consumer=durable, stream_messages=7, pending=3)


def lag(stream: str, consumer: str) -> float | None:
    return REGISTRY.get_sample_value("vigil_consumer_lag", {"stream": stream, "consumer": consumer})


async def test_a_consumer_the_bus_does_not_answer_for_costs_the_timeout_and_no_more() -> None:
    before = lag("ALERTS", "engine")
    started = time.monotonic()

    await refresh_consumer_lag(HangingForOne(), streams.MONITORED, timeout=0.2)

    assert time.monotonic() - started < 5.0, "one timeout, not one per consumer in turn"
    answered = ConsumerStats(stream="RESULTS", consumer="engine", stream_messages=7, pending=3)
    assert lag("RESULTS", "engine") == answered.lag
    assert lag("ALERTS", "engine") == before, "its last value is kept"
