"""Delivery semantics shared by every sink type (`vigil.sink.delivering`,
`vigil.sink.ratelimiting`) under a controllable clock: the token bucket, the jittered
backoff, `Retry-After`, the deadline, and one `deliveries` record per attempt."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, NotifyStep, StepRequest
from vigil.common.sink_resources import RateLimit
from vigil.common.store import Store
from vigil.common.testing import EPOCH, FakeClock, definitions_view, delivery, sqlite_store
from vigil.sink.delivering import (
    DeliveryLoop,
    GiveUp,
    Redeliver,
    Retry,
    RetryPolicy,
    after_failure,
)
from vigil.sink.notifiers import Notification
from vigil.sink.ratelimiting import RateLimits, TokenBucket

SINKS = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: pager, namespace: ops}
spec:
  type: webhook
  webhook: {url: "http://127.0.0.1:9/hooks"}
  rateLimit: {perMinute: 30}
---
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: free, namespace: ops}
spec:
  type: webhook
  webhook: {url: "http://127.0.0.1:9/hooks"}
"""


# --- the token bucket -----------------------------------------------------------------


def test_a_bucket_gives_its_burst_at_once_then_one_token_per_refill_interval() -> None:
    bucket = TokenBucket.of(RateLimit(per_minute=30, burst=2), now=EPOCH)

    waits = [bucket.reserve(EPOCH) for _ in range(4)]

    assert waits == [0.0, 0.0, 2.0, 4.0]  # 30/min: one token every 2 s, queued in order


def test_a_bucket_refills_with_time_up_to_its_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket.of(RateLimit(per_minute=60, burst=3), now=clock.now())
    for _ in range(3):
        assert bucket.reserve(clock.now()) == 0.0

    clock.advance(2.0)  # two tokens back
    assert [bucket.reserve(clock.now()) for _ in range(3)] == [0.0, 0.0, 1.0]

    clock.advance(3600)  # an idle hour fills it to the burst, not to 3600
    assert [bucket.reserve(clock.now()) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(1.0)]


def test_a_changed_rate_limit_starts_a_new_bucket_and_removing_it_frees_the_sink() -> None:
    limits = RateLimits()
    slow = RateLimit(per_minute=1)
    assert limits.reserve("ops/pager", slow, now=EPOCH) == 0.0
    assert limits.reserve("ops/pager", slow, now=EPOCH) == 60.0

    assert limits.reserve("ops/pager", RateLimit(per_minute=6), now=EPOCH) == 0.0
    assert limits.reserve("ops/pager", None, now=EPOCH) == 0.0
    assert limits.reserve("ops/pager", None, now=EPOCH) == 0.0


# --- backoff with jitter and the decision after a failure -----------------------------


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999])
def test_the_backoff_doubles_and_jitter_takes_off_at_most_its_fraction(draw: float) -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=8.0, jitter=0.5)

    delays = [policy.delay(retry, draw) for retry in range(1, 7)]

    for retry, delay in enumerate(delays, start=1):
        base = min(2.0 ** (retry - 1), 8.0)
        assert base * 0.5 < delay <= base
    assert delays[-1] == delays[-2], "capped at max_backoff"


def test_jitter_spreads_senders_that_failed_together() -> None:
    policy = RetryPolicy(backoff=4.0, jitter=1.0)

    delays = [policy.delay(1, draw) for draw in (0.0, 0.3, 0.6, 0.9)]

    assert delays == pytest.approx([4.0, 2.8, 1.6, 0.4])


def test_retry_after_replaces_the_jittered_backoff() -> None:
    decided = after_failure(
        RetryPolicy(backoff=0.5),
        TransientError("429", retry_after=12.0),
        retry=1,
        now=EPOCH,
        deadline=EPOCH + timedelta(minutes=5),
        delivery=delivery(1),
        draw=0.7,
    )

    assert decided == Retry(12.0)


def test_a_retry_that_would_start_after_the_deadline_is_not_made() -> None:
    decided = after_failure(
        RetryPolicy(backoff=0.5, deadline=60.0),
        TransientError("429", retry_after=30.0),
        retry=1,
        now=EPOCH + timedelta(seconds=45),
        deadline=EPOCH + timedelta(seconds=60),
        delivery=delivery(1),
        draw=0.0,
    )

    assert decided == GiveUp("deadline of 60s passed: 429")


def test_with_attempts_used_up_the_step_goes_back_to_the_bus_with_the_retry_after() -> None:
    policy = RetryPolicy(attempts=2)
    error = TransientError("503", retry_after=9.0)
    deadline = EPOCH + timedelta(minutes=5)

    def decided(number: int) -> Retry | Redeliver | GiveUp:
        on = delivery(number, max_deliver=3)
        return after_failure(
            policy, error, retry=2, now=EPOCH, deadline=deadline, delivery=on, draw=0.0
        )

    assert decided(1) == Redeliver(9.0)
    assert decided(3) == GiveUp("gave up after 3 deliveries: delivery failed after 2 attempts: 503")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"attempts": 0}, "attempts >= 1"),
        ({"deadline": 0.0}, "deadline > 0"),
        ({"jitter": 1.5}, "between 0 and 1"),
    ],
)
def test_a_bad_retry_policy_is_refused_naming_the_problem(
    settings: dict[str, float], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        RetryPolicy(**settings)  # type: ignore[arg-type]


# --- the loop: records, rate limits and the deadline under a fake clock ---------------


@dataclass(slots=True)
class Receiver:
    """A notifier that fails with `errors` in order, then delivers; notes when it was called."""

    clock: FakeClock
    errors: list[Exception] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)  # seconds since EPOCH
    keys: list[str] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        self.calls.append((self.clock.now() - EPOCH).total_seconds())
        self.keys.append(notification.idempotency_key)
        if self.errors:
            raise self.errors.pop(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Loop:
    loop: DeliveryLoop
    receiver: Receiver
    store: Store
    clock: FakeClock

    def notification(self, sink: str, *, execution: str = "01EX") -> Notification:
        definition = definitions_view(SINKS).sink("ops", sink)
        assert definition is not None
        request = StepRequest(
            execution_id=execution,
            namespace="ops",
            workflow="disk",
            step="report",
            attempt=1,
            idempotency_key=f"{execution}/report/1",
            notify=NotifyStep(
                sinks=[sink],
                title="t",
                message="m",
                alert=Alert.model_validate(
                    {
                        "status": "firing",
                        "fingerprint": "f1",
                        "labels": {"alertname": "DiskFull"},
                        "startsAt": EPOCH.isoformat(),
                    }
                ),
            ),
        )
        assert request.notify is not None
        return Notification(
            sink=definition,
            request=request,
            notify=request.notify,
            idempotency_key=f"{execution}/report/1/{sink}",
        )

    async def records(self, key: str) -> list[tuple[int, str, float, str | None]]:
        return [
            (r.attempt, r.status, (r.at - EPOCH).total_seconds(), r.detail)
            for r in await self.store.deliveries(idempotency_key=key)
        ]


@contextlib.asynccontextmanager
async def loop_of(folder: Path, policy: RetryPolicy) -> AsyncIterator[Loop]:
    async with sqlite_store(folder) as store:
        clock = FakeClock()
        receiver = Receiver(clock)
        loop = DeliveryLoop(
            store=store,
            notifiers={"webhook": receiver},
            policy=policy,
            clock=clock,
            draw=lambda: 0.5,
        )
        yield Loop(loop=loop, receiver=receiver, store=store, clock=clock)


async def test_every_attempt_is_one_record_with_the_same_key_and_jittered_waits(
    tmp_path: Path,
) -> None:
    async with loop_of(tmp_path, RetryPolicy(attempts=4, backoff=2.0, jitter=0.5)) as run:
        run.receiver.errors = [TransientError("503"), TransientError("502")]
        notification = run.notification("free")

        assert await run.loop.deliver(notification, delivery(1)) is None

        assert run.receiver.calls == [0.0, 1.5, 4.5]  # 2 s and 4 s, each less 25 %
        assert set(run.receiver.keys) == {"01EX/report/1/free"}
        assert await run.records("01EX/report/1/free") == [
            (1, "retrying", 0.0, "503"),
            (2, "retrying", 1.5, "502"),
            (3, "delivered", 4.5, None),
        ]


async def test_records_go_on_counting_across_bus_deliveries(tmp_path: Path) -> None:
    async with loop_of(tmp_path, RetryPolicy(attempts=2, backoff=1.0, jitter=0.0)) as run:
        run.receiver.errors = [TransientError("503")] * 3
        notification = run.notification("free")

        with pytest.raises(TransientError, match="after 2 attempts: 503"):
            await run.loop.deliver(notification, delivery(1, max_deliver=3))
        assert await run.loop.deliver(notification, delivery(2, max_deliver=3)) is None

        assert [(n, s) for n, s, _, _ in await run.records(notification.idempotency_key)] == [
            (1, "retrying"),
            (2, "retrying"),
            (3, "retrying"),
            (4, "delivered"),
        ]


async def test_the_deadline_stops_retrying_and_fails_the_delivery_naming_it(
    tmp_path: Path,
) -> None:
    policy = RetryPolicy(attempts=10, backoff=10.0, jitter=0.0, deadline=60.0)
    async with loop_of(tmp_path, policy) as run:
        run.receiver.errors = [TransientError("503")] * 10

        error = await run.loop.deliver(run.notification("free"), delivery(1))

        assert error == "sink free: deadline of 60s passed: 503"
        assert run.receiver.calls == [0.0, 10.0, 30.0]  # the next would start at 70 s
        assert [s for _, s, _, _ in await run.records("01EX/report/1/free")] == [
            "retrying",
            "retrying",
            "failed",
        ]


async def test_the_deadline_counts_from_the_first_attempt_across_bus_deliveries(
    tmp_path: Path,
) -> None:
    policy = RetryPolicy(attempts=1, backoff=1.0, jitter=0.0, deadline=60.0)
    async with loop_of(tmp_path, policy) as run:
        run.receiver.errors = [TransientError("503")] * 3
        notification = run.notification("free")
        with pytest.raises(TransientError):
            await run.loop.deliver(notification, delivery(1, max_deliver=9))

        run.clock.advance(61)  # the bus redelivered the step later
        error = await run.loop.deliver(notification, delivery(2, max_deliver=9))

        assert error == "sink free: deadline of 60s passed before this delivery"
        assert len(run.receiver.calls) == 1  # no attempt starts past the deadline


async def test_a_delivery_that_failed_for_good_is_not_tried_again_on_a_redelivery(
    tmp_path: Path,
) -> None:
    """Another sink's transient failure redelivers the step: this one stays given up."""
    async with loop_of(tmp_path, RetryPolicy(attempts=3, backoff=1.0, jitter=0.0)) as run:
        run.receiver.errors = [PermanentError("400 invalid event")]
        notification = run.notification("free")
        first = await run.loop.deliver(notification, delivery(1, max_deliver=5))

        again = await run.loop.deliver(notification, delivery(2, max_deliver=5))

        assert first == again == "sink free: 400 invalid event"
        assert len(run.receiver.calls) == 1
        assert [s for _, s, _, _ in await run.records(notification.idempotency_key)] == ["failed"]


async def test_a_rate_limited_sink_spaces_its_attempts_and_others_are_not_held(
    tmp_path: Path,
) -> None:
    async with loop_of(tmp_path, RetryPolicy()) as run:
        for execution in ("01A", "01B", "01C"):
            assert (
                await run.loop.deliver(run.notification("pager", execution=execution), delivery(1))
                is None
            )
        assert (
            await run.loop.deliver(run.notification("free", execution="01D"), delivery(1)) is None
        )

        assert run.receiver.calls == [0.0, 2.0, 4.0, 4.0]  # 30/min, burst 1; `free` at once
        assert run.clock.slept == [2.0, 2.0]
        (record,) = await run.records("01C/report/1/pager")
        assert record[:3] == (1, "delivered", 4.0), "the attempt's time is after its wait"
