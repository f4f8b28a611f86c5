"""The delivery loop around every notifier, written once for all sink types.

For one notification to one sink (one idempotency key):
- skip it if an attempt with its key already succeeded (a redelivered step);
- before each attempt, wait for the sink's rate limit (`vigil.sink.ratelimiting`);
- make the attempt with the sink type's notifier, always with the same idempotency key;
- record every attempt in `deliveries` (`delivered`, `retrying` when another attempt
  follows, `failed` when none does), numbered across the step's bus deliveries;
- after a transient failure, retry up to `attempts` times per bus delivery with an
  exponential backoff less a random jitter (`RetryPolicy.delay`); the receiver's
  `Retry-After` replaces the backoff. With the attempts used up and bus deliveries left,
  the error is raised so the bus redelivers the step later; on its last delivery the
  delivery fails, so the execution does not hang.
- a deadline per delivery, counted from its first attempt across bus deliveries: no retry
  is started that would begin after it; the delivery fails naming the deadline.
A permanent failure (a receiver that refused the notification) fails at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

import structlog
from prometheus_client import Counter

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.documents import DeliveryRecord
from vigil.common.errors import PermanentError, TransientError
from vigil.common.store import DeliveryStore
from vigil.sink.notifiers import Notification, Notifier, Notifiers
from vigil.sink.ratelimiting import RateLimits

log = structlog.get_logger(__name__)

DELIVERIES = Counter(
    "vigil_deliveries_total", "Deliveries by sink type and outcome.", ["type", "outcome"]
)
DELIVERY_ATTEMPTS = Counter(
    "vigil_delivery_attempts_total",
    "Delivery attempts by sink type and status.",
    ["type", "status"],
)

type Status = Literal["delivered", "failed", "retrying"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently one delivery is retried."""

    attempts: int = 3  # per bus delivery of the step
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one
    max_backoff: float = 60.0
    jitter: float = 0.5  # up to this fraction of each backoff is taken off at random
    deadline: float = 300.0  # seconds from the first attempt after which no retry starts

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff <= 0 or self.deadline <= 0:
            msg = f"retry policy needs attempts >= 1, backoff > 0 and deadline > 0: {self}"
            raise ValueError(msg)
        if not 0 <= self.jitter <= 1:
            msg = f"retry jitter is a fraction between 0 and 1, not {self.jitter}"
            raise ValueError(msg)

    def delay(self, retry: int, draw: float) -> float:
        """The wait before retry `retry` (1: the first) for a random `draw` in [0, 1):
        the doubled backoff, capped at `max_backoff`, less `jitter * draw` of it, so
        senders that failed together do not all come back at the same moment."""
        base = min(self.backoff * 2.0 ** (retry - 1), self.max_backoff)
        return float(base * (1.0 - self.jitter * draw))


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again in this process after `delay` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Hand the step back to the bus (attempts of this delivery used up)."""

    retry_after: float | None


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def after_failure(
    policy: RetryPolicy,
    error: TransientError,
    *,
    retry: int,
    now: datetime,
    deadline: datetime,
    delivery: Delivery,
    draw: float,
) -> Retry | Redeliver | GiveUp:
    """What follows a transient failure when `retry` would be this delivery's next retry."""
    if retry >= policy.attempts:
        if delivery.is_last:
            return GiveUp(
                f"gave up after {delivery.delivery} deliveries: "
                f"delivery failed after {policy.attempts} attempts: {error}"
            )
        if now >= deadline:
            return GiveUp(f"deadline of {policy.deadline:g}s passed: {error}")
        return Redeliver(error.retry_after)
    delay = error.retry_after if error.retry_after is not None else policy.delay(retry, draw)
    if now + timedelta(seconds=delay) > deadline:
        return GiveUp(f"deadline of {policy.deadline:g}s passed: {error}")
    return Retry(delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryLoop:
    store: DeliveryStore
    notifiers: Notifiers
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = SYSTEM_CLOCK
    limits: RateLimits = field(default_factory=RateLimits)
    draw: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        # Every sink type's outcomes at 0 from the start: a dashboard's failure rate is then
        # 0, not "no data", until the first failure.
        for sink_type in self.notifiers:
            for outcome in ("delivered", "failed"):
                DELIVERIES.labels(type=sink_type, outcome=outcome)
            for status in get_args(Status.__value__):
                DELIVERY_ATTEMPTS.labels(type=sink_type, status=status)

    async def deliver(self, notification: Notification, delivery: Delivery) -> str | None:
        """Deliver unless an attempt with this key already succeeded; record each attempt.

        Returns None when delivered, or the reason it failed for good. Raises
        TransientError (the step is redelivered) while deliveries are left.
        """
        key = notification.idempotency_key
        previous = await self.store.deliveries(idempotency_key=key)
        if any(d.status == "delivered" for d in previous):
            log.info("delivery_already_done", sink=notification.sink_name, key=key)
            return None
        # The step is redelivered for another sink's sake: a sink that gave up stays given up.
        failed = next((d for d in previous if d.status == "failed"), None)
        if failed is not None:
            log.info("delivery_already_failed", sink=notification.sink_name, key=key)
            return f"sink {notification.sink_name}: {failed.detail}"
        notifier = self.notifiers.get(notification.sink_type)
        number = len(previous) + 1
        if notifier is None:
            detail = f"sink type {notification.sink_type} is not available in this build"
            await self._record(notification, number, self.clock.now(), "failed", detail)
            return self._finished(notification, "failed", detail)
        first = previous[0].at if previous else self.clock.now()
        deadline = first + timedelta(seconds=self.policy.deadline)
        if self.clock.now() >= deadline:
            detail = f"deadline of {self.policy.deadline:g}s passed before this delivery"
            await self._record(notification, number, self.clock.now(), "failed", detail)
            return self._finished(notification, "failed", detail)
        return await self._attempts(notification, notifier, delivery, number, deadline)

    async def _attempts(
        self,
        notification: Notification,
        notifier: Notifier,
        delivery: Delivery,
        number: int,
        deadline: datetime,
    ) -> str | None:
        retry = 0
        while True:
            started = await self._take_turn(notification)
            try:
                await notifier.send(notification)
            except PermanentError as exc:
                await self._record(notification, number, started, "failed", str(exc))
                return self._finished(notification, "failed", str(exc))
            except TransientError as exc:
                retry += 1
                step = after_failure(
                    self.policy,
                    exc,
                    retry=retry,
                    now=self.clock.now(),
                    deadline=deadline,
                    delivery=delivery,
                    draw=self.draw(),
                )
                if isinstance(step, GiveUp):
                    await self._record(notification, number, started, "failed", step.reason)
                    return self._finished(notification, "failed", step.reason)
                await self._record(notification, number, started, "retrying", str(exc))
                if isinstance(step, Redeliver):
                    msg = f"delivery failed after {self.policy.attempts} attempts: {exc}"
                    raise TransientError(msg, retry_after=step.retry_after) from exc
                await self.clock.sleep(step.delay)
                number += 1
            else:
                await self._record(notification, number, started, "delivered", None)
                return self._finished(notification, "delivered", None)

    async def _take_turn(self, notification: Notification) -> datetime:
        """Wait for the sink's rate limit; return when the attempt starts."""
        wait = self.limits.reserve(
            notification.resource.ref, notification.resource.spec.rate_limit, now=self.clock.now()
        )
        if wait > 0:
            log.info("delivery_rate_limited", sink=notification.sink_name, wait_seconds=wait)
            await self.clock.sleep(wait)
        return self.clock.now()

    def _finished(
        self,
        notification: Notification,
        outcome: Literal["delivered", "failed"],
        detail: str | None,
    ) -> str | None:
        DELIVERIES.labels(type=notification.sink_type, outcome=outcome).inc()
        return None if detail is None else f"sink {notification.sink_name}: {detail}"

    async def _record(
        self,
        notification: Notification,
        number: int,
        started: datetime,
        status: Status,
        detail: str | None,
    ) -> None:
        DELIVERY_ATTEMPTS.labels(type=notification.sink_type, status=status).inc()
        key = notification.idempotency_key
        await self.store.record_delivery(
            DeliveryRecord(
                id=f"{key}#{number}",
                idempotency_key=key,
                execution_id=notification.request.execution_id,
                step=notification.request.step,
                sink=notification.sink_name,
                sink_type=notification.sink_type,
                attempt=number,
                status=status,
                detail=detail,
                at=started,
            )
        )
