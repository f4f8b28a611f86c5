"""Per-sink rate limits: one token bucket per Sink, as its `rateLimit` says.

A Sink with `rateLimit: {perMinute: N, burst: B}` gets a bucket that holds at most B
tokens (1 unless told) and refills at N per minute. Every delivery attempt to that sink
takes a token first (`vigil.sink.delivering`); when none is left, the attempt waits for
its turn. Reservations are made in order and may run the bucket below zero, so many
notifications in flight to one sink queue one behind the other instead of all waking at
the same moment. Buckets live in the sink process: with several sink replicas, each one
keeps the rate (document the total you want divided by the replicas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from vigil.common.sink_resources import RateLimit

SECONDS_PER_MINUTE = 60.0


@dataclass(slots=True, kw_only=True)
class TokenBucket:
    """`capacity` tokens at most, `rate` more per second; `tokens` may go below zero
    while attempts are queued for their turn."""

    rate: float
    capacity: float
    tokens: float
    updated: datetime

    @classmethod
    def of(cls, limit: RateLimit, *, now: datetime) -> TokenBucket:
        burst = float(limit.burst)
        return cls(
            rate=limit.per_minute / SECONDS_PER_MINUTE, capacity=burst, tokens=burst, updated=now
        )

    def reserve(self, now: datetime) -> float:
        """Take one token; return the seconds to wait before it may be used (0: at once)."""
        elapsed = max((now - self.updated).total_seconds(), 0.0)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(now, self.updated)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class RateLimits:
    """The bucket of each rate-limited sink, by `namespace/name`; a changed `rateLimit`
    starts a new bucket."""

    buckets: dict[str, tuple[RateLimit, TokenBucket]] = field(default_factory=dict)

    def reserve(self, sink: str, limit: RateLimit | None, *, now: datetime) -> float:
        """Seconds to wait before the next attempt to `sink` (0 when it has no limit)."""
        if limit is None:
            self.buckets.pop(sink, None)
            return 0.0
        kept = self.buckets.get(sink)
        if kept is None or kept[0] != limit:
            kept = (limit, TokenBucket.of(limit, now=now))
            self.buckets[sink] = kept
        return kept[1].reserve(now)
