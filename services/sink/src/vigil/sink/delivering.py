"""The delivery loop around every notifier, written once.

For one notification to one sink: skip it if a delivery with its idempotency key already
succeeded (a redelivered step), try the sink type's notifier up to `attempts` times with
exponential backoff (the receiver's `Retry-After` replaces the backoff), and record the
outcome in `deliveries`. While the step has deliveries left, a transient failure is
recorded as `retrying` and raised, so the bus redelivers the step; on its last delivery it
is recorded and reported as `failed`, so the execution does not hang.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from prometheus_client import Counter

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.documents import DeliveryRecord
from vigil.common.errors import PermanentError, TransientError
from vigil.common.store import DeliveryStore
from vigil.sink.notifiers import Notification, Notifiers

log = structlog.get_logger(__name__)

DELIVERIES = Counter(
    "vigil_deliveries_total", "Deliveries by sink type and outcome.", ["type", "outcome"]
)


async def with_retries[T](
    attempt: Callable[[], Awaitable[T]], *, attempts: int, backoff: float, clock: Clock
) -> T:
    """Run `attempt` until it returns, at most `attempts` times, sleeping between tries.

    The delay doubles from `backoff`; a TransientError's `retry_after` replaces it. After
    the last try the TransientError is raised with the last `retry_after`.
    """
    delay = backoff
    number = 1
    while True:
        try:
            return await attempt()
        except TransientError as exc:
            if number >= attempts:
                msg = f"delivery failed after {attempts} attempts: {exc}"
                raise TransientError(msg, retry_after=exc.retry_after) from exc
            await clock.sleep(exc.retry_after if exc.retry_after is not None else delay)
            delay *= 2
            number += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryLoop:
    store: DeliveryStore
    notifiers: Notifiers
    attempts: int
    backoff: float
    clock: Clock = SYSTEM_CLOCK

    async def deliver(self, notification: Notification, delivery: Delivery) -> str | None:
        """Deliver unless a delivery with this key already succeeded; record the attempt.

        Returns None when delivered, or the reason it failed for good. Raises
        TransientError (the step is redelivered) while deliveries are left.
        """
        key = notification.idempotency_key
        previous = await self.store.deliveries(idempotency_key=key)
        if any(d.status == "delivered" for d in previous):
            log.info("delivery_already_done", sink=notification.sink_name, key=key)
            return None
        record = len(previous) + 1
        outcome: Literal["delivered", "failed"]
        detail: str | None
        try:
            await self._send(notification)
        except TransientError as exc:
            if not delivery.is_last:
                await self._record(notification, record, status="retrying", detail=str(exc))
                raise
            # Out of deliveries: report the failure so the execution does not hang.
            outcome, detail = "failed", f"gave up after {delivery.delivery} deliveries: {exc}"
        except PermanentError as exc:
            outcome, detail = "failed", str(exc)
        else:
            outcome, detail = "delivered", None
        await self._record(notification, record, status=outcome, detail=detail)
        DELIVERIES.labels(type=notification.sink_type, outcome=outcome).inc()
        return None if detail is None else f"sink {notification.sink_name}: {detail}"

    async def _send(self, notification: Notification) -> None:
        notifier = self.notifiers.get(notification.sink_type)
        if notifier is None:
            msg = f"sink type {notification.sink_type} is not available in this build"
            raise PermanentError(msg)
        await with_retries(
            lambda: notifier.send(notification),
            attempts=self.attempts,
            backoff=self.backoff,
            clock=self.clock,
        )

    async def _record(
        self,
        notification: Notification,
        number: int,
        *,
        status: Literal["delivered", "failed", "retrying"],
        detail: str | None,
    ) -> None:
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
                at=self.clock.now(),
            )
        )
