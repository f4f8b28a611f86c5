"""JetStreamBus against a real nats-server: provisioning, deduplication, outcomes, dead
letters, trace propagation, heartbeats and pipelined publishing.

Each test gets a fresh server (`nats_url`), because the stream names of DESIGN §3 are fixed.
Waiting is on queues and events with deadlines. Sleeps only stand for a handler's work, or
let ack_wait pass to show that a redelivery does *not* happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from tests.support.bus import (
    DLQ_SPEC,
    SUBJECT,
    WAIT_SECONDS,
    WORKER,
    WORKER_SPEC,
    Ping,
    Received,
    consuming,
    drained,
    eventually,
    next_item,
    past_ack_wait,
    recorder,
    stored,
    until_pulling,
    until_stream_empty,
)
from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.bus import Delivery, Outgoing
from vigil.common.errors import MessageTooLarge, PermanentError, TransientError
from vigil.common.messages import DeadLetter
from vigil.common.streams import DAY, stream_specs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_task_left_behind")]


# --- provisioning ------------------------------------------------------------------------


async def test_ensure_streams_creates_the_design_layout_idempotently(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """DESIGN §3: the five streams with their subjects and retention, plus whatever else
    `stream_specs()` declares; re-running changes nothing and keeps what is stored."""
    assert await bus.publish(SUBJECT, Ping(n=1), msg_id="kept")

    await bus.ensure_streams(stream_specs())
    await bus.ensure_streams(stream_specs())

    infos = {str(info.config.name): info for info in await js.streams_info()}
    assert set(infos) == {spec.name for spec in stream_specs()}
    layout = {
        name: (info.config.subjects, info.config.retention, info.config.max_age)
        for name, info in infos.items()
        if name in {"ALERTS", "STEPS", "RESULTS", "EVENTS", "DLQ"}
    }
    assert layout == {
        "ALERTS": (["vigil.alerts.>"], RetentionPolicy.LIMITS, 7 * DAY),
        "STEPS": (["vigil.steps.>"], RetentionPolicy.WORK_QUEUE, 0),
        "RESULTS": (["vigil.results"], RetentionPolicy.WORK_QUEUE, 0),
        "EVENTS": (["vigil.events.>"], RetentionPolicy.LIMITS, 1 * DAY),
        "DLQ": (["vigil.dlq.>"], RetentionPolicy.LIMITS, 14 * DAY),
    }
    assert infos["ALERTS"].config.duplicate_window >= 10 * 60
    assert {info.config.storage for info in infos.values()} == {StorageType.FILE}
    assert infos["STEPS"].state.messages == 1


async def test_publish_without_a_stream_raises_transient_error(bus: JetStreamBus) -> None:
    """A publish nobody stored is never reported as done: the caller can answer 5xx."""
    with pytest.raises(TransientError, match=r"vigil\.nowhere"):
        await bus.publish("vigil.nowhere", Ping(n=1), msg_id="lost")


# --- deduplication -----------------------------------------------------------------------


async def test_same_msg_id_is_stored_and_delivered_once(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    assert await bus.publish(SUBJECT, Ping(n=1), msg_id="exec-1/step-a/1") is True
    assert await bus.publish(SUBJECT, Ping(n=1), msg_id="exec-1/step-a/1") is False
    assert await stored(js, subjects.STEPS_STREAM) == 1

    received: Received[Ping] = asyncio.Queue()
    async with consuming(bus, WORKER_SPEC, Ping, recorder(received)):
        message, delivery = await next_item(received)
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(WORKER_SPEC)

    assert message == Ping(n=1)
    assert delivery.delivery == 1
    assert delivery.subject == SUBJECT
    assert delivery.headers["Nats-Msg-Id"] == "exec-1/step-a/1"
    assert delivery.headers["Vigil-Schema"] == "test.v1"
    assert drained(received) == []


# --- outcomes: retry, dead letter ---------------------------------------------------------


async def test_transient_error_is_redelivered_after_retry_after_then_acked(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    deliveries: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    async def flaky(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait((delivery.delivery, time.monotonic()))
        if delivery.delivery == 1:
            raise TransientError("store busy", retry_after=0.2)

    await bus.publish(SUBJECT, Ping(n=7), msg_id="flaky")
    async with consuming(bus, WORKER_SPEC, Ping, flaky):
        first, first_at = await next_item(deliveries)
        second, second_at = await next_item(deliveries)
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(WORKER_SPEC)

    assert (first, second) == (1, 2)
    assert second_at - first_at >= 0.15, "the nak delay (retry_after) was not honoured"
    assert drained(deliveries) == [], "acknowledged, yet delivered again"


async def test_handler_that_keeps_failing_is_dead_lettered_after_max_deliver(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    deliveries: asyncio.Queue[int] = asyncio.Queue()

    async def failing(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        raise TransientError("downstream unavailable", retry_after=0.1)

    original = Ping(n=3, note="ünïcode")
    await bus.publish(SUBJECT, original, msg_id="doomed")
    letters: Received[DeadLetter] = asyncio.Queue()
    async with (
        consuming(bus, WORKER_SPEC, Ping, failing),
        consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)),
    ):
        letter, letter_delivery = await next_item(letters)
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(WORKER_SPEC)

    assert drained(deliveries) == [1, 2, 3]
    assert letter_delivery.subject == "vigil.dlq.steps.test-worker"
    assert letter_delivery.headers["Vigil-Schema"] == "dlq.v1"
    assert letter.stream == "STEPS"
    assert letter.consumer == WORKER
    assert letter.subject == SUBJECT
    assert letter.deliveries == 3
    assert letter.reason == ("gave up after 3 deliveries: TransientError: downstream unavailable")
    assert Ping.model_validate_json(letter.data) == original
    assert letter.headers["Nats-Msg-Id"] == "doomed"
    assert await stored(js, subjects.DLQ_STREAM) == 1


async def test_the_consumers_metrics_count_redeliveries_settlements_and_dead_letters(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    def sample(name: str, **labels: str) -> float:
        labels = {"stream": WORKER_SPEC.stream, "consumer": WORKER, **labels}
        return REGISTRY.get_sample_value(name, labels) or 0.0

    names = ("vigil_redeliveries_total", "vigil_dead_letters_total")
    before = {name: sample(name) for name in names}
    settled = {a: sample("vigil_messages_settled_total", action=a) for a in ("ack", "nak", "term")}

    async def failing(message: Ping, delivery: Delivery) -> None:
        if message.n == 1:
            raise TransientError("downstream unavailable", retry_after=0.1)

    await bus.publish(SUBJECT, Ping(n=1), msg_id="doomed")
    await bus.publish(SUBJECT, Ping(n=2), msg_id="fine")
    letters: Received[DeadLetter] = asyncio.Queue()
    async with (
        consuming(bus, WORKER_SPEC, Ping, failing),
        consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)),
    ):
        await next_item(letters)
        await until_stream_empty(js, subjects.STEPS_STREAM)

    assert sample("vigil_redeliveries_total") == before["vigil_redeliveries_total"] + 2
    assert sample("vigil_dead_letters_total") == before["vigil_dead_letters_total"] + 1
    after = {a: sample("vigil_messages_settled_total", action=a) for a in settled}
    assert {a: after[a] - settled[a] for a in settled} == {"ack": 1, "nak": 2, "term": 1}


async def test_unexpected_exception_is_retried_with_backoff_then_dead_lettered(
    bus: JetStreamBus,
) -> None:
    """A bug in a handler (not one of our errors) is retried like a transient failure."""
    deliveries: asyncio.Queue[int] = asyncio.Queue()

    async def buggy(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        raise RuntimeError("boom")

    await bus.publish(SUBJECT, Ping(n=1), msg_id="buggy")
    letters: Received[DeadLetter] = asyncio.Queue()
    spec = dataclasses.replace(WORKER_SPEC, max_deliver=2)
    async with (
        consuming(bus, spec, Ping, buggy),
        consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)),
    ):
        letter, _ = await next_item(letters)

    assert drained(deliveries) == [1, 2]
    assert letter.deliveries == 2
    assert letter.reason == "gave up after 2 deliveries: RuntimeError: boom"


async def test_permanent_error_is_dead_lettered_on_first_delivery(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    deliveries: asyncio.Queue[int] = asyncio.Queue()

    async def refusing(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        raise PermanentError("workflow 'restart' does not exist")

    await bus.publish(SUBJECT, Ping(n=1), msg_id="refused")
    letters: Received[DeadLetter] = asyncio.Queue()
    async with (
        consuming(bus, WORKER_SPEC, Ping, refusing),
        consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)),
    ):
        letter, _ = await next_item(letters)
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(WORKER_SPEC)

    assert drained(deliveries) == [1]
    assert letter.deliveries == 1
    assert letter.reason == "PermanentError: workflow 'restart' does not exist"


@pytest.mark.parametrize(
    ("body", "data"),
    [
        pytest.param(b"{not json", "{not json", id="not-json"),
        pytest.param(b'{"n": "seven"}', '{"n": "seven"}', id="wrong-type"),
        pytest.param(b'{"n": 1, "extra": true}', '{"n": 1, "extra": true}', id="unknown-field"),
        pytest.param(b"\xff\xfe", "\ufffd\ufffd", id="not-utf8"),
    ],
)
async def test_undecodable_body_is_dead_lettered_without_calling_the_handler(
    bus: JetStreamBus, js: JetStreamContext, body: bytes, data: str
) -> None:
    called: Received[Ping] = asyncio.Queue()
    await js.publish(SUBJECT, body, headers={"Nats-Msg-Id": "raw-1"})
    letters: Received[DeadLetter] = asyncio.Queue()
    async with (
        consuming(bus, WORKER_SPEC, Ping, recorder(called)),
        consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)),
    ):
        letter, _ = await next_item(letters)
        await until_stream_empty(js, subjects.STEPS_STREAM)

    # The handler would have run before the dead letter was published.
    assert drained(called) == []
    assert letter.deliveries == 1
    assert letter.reason.startswith("InvalidInput: undecodable Ping")
    assert letter.data == data
    assert letter.headers == {"Nats-Msg-Id": "raw-1"}


# --- tracing -----------------------------------------------------------------------------


async def test_consumer_span_continues_the_publishers_trace(
    bus: JetStreamBus, span_exporter: InMemorySpanExporter
) -> None:
    seen: asyncio.Queue[tuple[trace.SpanContext, Delivery]] = asyncio.Queue()

    async def traced(message: Ping, delivery: Delivery) -> None:
        seen.put_nowait((trace.get_current_span().get_span_context(), delivery))

    with trace.get_tracer("tests.bus").start_as_current_span("produce") as producer:
        await bus.publish(SUBJECT, Ping(n=1), msg_id="traced")
    produced = producer.get_span_context()

    consumer_name = f"consume {WORKER}"

    async def consumer_span_ended() -> bool:
        return any(span.name == consumer_name for span in span_exporter.get_finished_spans())

    async with consuming(bus, WORKER_SPEC, Ping, traced):
        in_handler, delivery = await next_item(seen)
        await eventually(consumer_span_ended, "the consumer span ended")

    assert produced.is_valid
    assert delivery.headers["traceparent"].split("-")[1] == f"{produced.trace_id:032x}"
    assert in_handler.trace_id == produced.trace_id
    (consumer,) = [s for s in span_exporter.get_finished_spans() if s.name == consumer_name]
    assert consumer.kind is trace.SpanKind.CONSUMER
    assert consumer.parent is not None
    assert consumer.parent.span_id == produced.span_id
    assert consumer.context is not None
    assert consumer.context.span_id == in_handler.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.destination.name"] == SUBJECT


# --- heartbeats -------------------------------------------------------------


async def test_long_handler_heartbeats_and_is_delivered_once(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """A handler running 2.5 times ack_wait is kept alive by `in_progress`, not redelivered."""
    deliveries: asyncio.Queue[int] = asyncio.Queue()
    finished = asyncio.Event()

    async def slow(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        await asyncio.sleep(2.5)  # the work itself
        finished.set()

    await bus.publish(SUBJECT, Ping(n=1), msg_id="slow")
    async with consuming(bus, WORKER_SPEC, Ping, slow):
        async with asyncio.timeout(WAIT_SECONDS):
            await finished.wait()
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(WORKER_SPEC)

    assert drained(deliveries) == [1]


# --- pipelined publishing ----------------------------------------------------------------


async def test_publish_all_stores_every_message_once_and_each_is_consumed_once(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    items = [Outgoing(subject=SUBJECT, message=Ping(n=n), msg_id=f"bulk-{n}") for n in range(200)]
    assert await bus.publish_all(items) == 200
    assert await bus.publish_all(items[:50]) == 0, "re-sent ids must be deduplicated"
    assert await stored(js, subjects.STEPS_STREAM) == 200

    seen: Counter[int] = Counter()
    all_seen = asyncio.Event()

    async def count(message: Ping, delivery: Delivery) -> None:
        seen[message.n] += 1
        if len(seen) == 200:
            all_seen.set()

    spec = dataclasses.replace(WORKER_SPEC, ack_wait_seconds=30.0)
    async with consuming(bus, spec, Ping, count):
        async with asyncio.timeout(WAIT_SECONDS):
            await all_seen.wait()
        await until_stream_empty(js, subjects.STEPS_STREAM)

    assert set(seen) == set(range(200))
    assert set(seen.values()) == {1}


async def test_concurrent_publish_all_each_get_their_own_acknowledgements(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """Batches published at once share one reply subscription: each counts its own."""
    batches = [
        [Outgoing(subject=SUBJECT, message=Ping(n=n), msg_id=f"c{b}-{n}") for n in range(40)]
        for b in range(5)
    ]
    batches[4] = batches[4][:20] + batches[0][:20]  # 20 new, 20 already sent by batch 0
    await bus.publish_all(batches[0])
    counts = await asyncio.gather(*(bus.publish_all(batch) for batch in batches[1:]))
    assert counts == [40, 40, 40, 20]
    assert await stored(js, subjects.STEPS_STREAM) == 180


async def test_publish_all_with_one_message_no_stream_takes_is_not_reported_done(
    bus: JetStreamBus,
) -> None:
    items = [
        Outgoing(subject=SUBJECT, message=Ping(n=1), msg_id="kept-1"),
        Outgoing(subject="vigil.nowhere", message=Ping(n=2), msg_id="lost-2"),
    ]
    with pytest.raises(TransientError, match=r"2 message\(s\) was not acknowledged"):
        await bus.publish_all(items)


async def test_a_batch_with_a_message_over_max_payload_is_refused_whole_naming_it(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """The server counts headers with the body against max_payload and drops a client that
    goes over; the bus refuses such a batch before sending any of it, names the message,
    and stays connected. Its body alone is under the limit: only the headers push it over."""
    limit = 1024 * 1024  # nats-server's default max_payload
    body_only = len(Ping(n=2, note="").model_dump_json().encode())
    items = [
        Outgoing(subject=SUBJECT, message=Ping(n=0), msg_id="small-0"),
        Outgoing(subject=SUBJECT, message=Ping(n=1), msg_id="small-1"),
        Outgoing(
            subject=SUBJECT, message=Ping(n=2, note="x" * (limit - body_only - 8)), msg_id="big"
        ),
    ]

    with pytest.raises(MessageTooLarge) as refused:
        await bus.publish_all(items)
    with pytest.raises(MessageTooLarge, match="over the server's max_payload of 1048576 bytes"):
        await bus.publish(SUBJECT, items[2].message, msg_id="big")

    assert (refused.value.index, refused.value.limit) == (2, limit)
    assert refused.value.size > limit
    assert await stored(js, subjects.STEPS_STREAM) == 0
    assert bus.connected
    assert await bus.publish_all(items[:2]) == 2


async def test_max_in_flight_bounds_concurrent_handlers(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """A backlog larger than the batch never runs more than max_in_flight handlers at once."""
    spec = dataclasses.replace(WORKER_SPEC, ack_wait_seconds=30.0, max_in_flight=4, batch=4)
    items = [Outgoing(subject=SUBJECT, message=Ping(n=n), msg_id=f"load-{n}") for n in range(40)]
    assert await bus.publish_all(items) == 40

    running = 0
    most = 0
    seen: Counter[int] = Counter()
    all_seen = asyncio.Event()

    async def busy(message: Ping, delivery: Delivery) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.02)  # the work itself
        finally:
            running -= 1
        seen[message.n] += 1
        if len(seen) == len(items):
            all_seen.set()

    async with consuming(bus, spec, Ping, busy):
        async with asyncio.timeout(WAIT_SECONDS):
            await all_seen.wait()
        await until_stream_empty(js, subjects.STEPS_STREAM)

    assert most == 4, f"at most {most} handlers ran at once"
    assert set(seen.values()) == {1}


class OverFetchingBus(JetStreamBus):
    """A bus whose first fetch hands over more messages than it was asked for, as nats-py's
    fetch does when its queue still holds what an earlier pull delivered late."""

    over_fetched = 0

    @staticmethod
    async def _fetch(psub: JetStreamContext.PullSubscription, want: int) -> list[Msg]:
        if OverFetchingBus.over_fetched == 0:
            msgs = await psub.fetch(want + 3, timeout=WAIT_SECONDS)
            OverFetchingBus.over_fetched = len(msgs)
            return msgs
        return await psub.fetch(want, timeout=WAIT_SECONDS)


async def test_a_fetch_that_hands_over_more_than_asked_is_handled_and_consuming_goes_on(
    nats_url: str, js: JetStreamContext
) -> None:
    """More messages than the room left: they run, and the next fetch waits for room
    (it used to ask for a batch of -2 and the consumer died with ValueError)."""
    spec = dataclasses.replace(WORKER_SPEC, ack_wait_seconds=30.0, max_in_flight=2, batch=2)
    bus = await OverFetchingBus.connect(nats_url, name="over-fetching")
    try:
        await bus.ensure_streams(stream_specs())
        items = [Outgoing(subject=SUBJECT, message=Ping(n=n), msg_id=f"o-{n}") for n in range(12)]
        assert await bus.publish_all(items) == len(items)
        seen: Counter[int] = Counter()
        all_seen = asyncio.Event()

        async def work(message: Ping, delivery: Delivery) -> None:
            # The work itself, of different lengths: the over-fetched ones finish one by one.
            await asyncio.sleep(0.02 + 0.05 * (message.n % 5))
            seen[message.n] += 1
            if len(seen) == len(items):
                all_seen.set()

        async with consuming(bus, spec, Ping, work):
            async with asyncio.timeout(WAIT_SECONDS):
                await all_seen.wait()
            await until_stream_empty(js, subjects.STEPS_STREAM)
    finally:
        await bus.close()
    assert OverFetchingBus.over_fetched > spec.max_in_flight
    assert set(seen.values()) == {1}


# --- an idle consumer ---------------------------------------------------------------------
# A pull for a whole batch stays open until the batch is full or the poll expires: these pin
# that a lone message reaching an idle consumer is neither held back nor left to outlive
# ack_wait inside an open fetch.


async def test_idle_consumer_hands_a_new_message_over_promptly(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """DESIGN §9 wants alert → first step in ≤ 20 ms p50; one hop must not take seconds."""
    received: Received[Ping] = asyncio.Queue()
    async with consuming(bus, WORKER_SPEC, Ping, recorder(received)):
        await until_pulling(js, WORKER_SPEC)
        published_at = time.monotonic()
        await bus.publish(SUBJECT, Ping(n=1), msg_id="prompt")
        await next_item(received)
        latency = time.monotonic() - published_at
        await until_stream_empty(js, subjects.STEPS_STREAM)

    assert latency < 0.5, f"handed over after {latency:.2f} s"


async def test_idle_consumer_does_not_get_a_message_redelivered_while_holding_it(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """DESIGN §6: a message being worked on is not redelivered, however long ack_wait is
    compared with the fetch's long poll."""
    spec = dataclasses.replace(WORKER_SPEC, max_deliver=5)
    deliveries: asyncio.Queue[int] = asyncio.Queue()
    finished = asyncio.Event()

    async def slow(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        await asyncio.sleep(1.5)  # the work itself
        finished.set()

    async with consuming(bus, spec, Ping, slow):
        await until_pulling(js, spec)
        await bus.publish(SUBJECT, Ping(n=1), msg_id="held")
        async with asyncio.timeout(WAIT_SECONDS):
            await finished.wait()
        await until_stream_empty(js, subjects.STEPS_STREAM)
        await past_ack_wait(spec)

    assert drained(deliveries) == [1]


async def test_a_listener_says_when_it_is_subscribed_and_hears_what_comes_after(
    bus: JetStreamBus,
) -> None:
    """What `ready` promises: a notice announced once it is set reaches the handler (the
    console's live pages rely on it); an undecodable one is skipped, not fatal."""
    heard: asyncio.Queue[int] = asyncio.Queue()
    ready = asyncio.Event()

    async def handler(message: Ping) -> None:
        heard.put_nowait(message.n)

    listening = asyncio.create_task(bus.listen("vigil.test.notices", Ping, handler, ready=ready))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await ready.wait()
        await bus._nc.publish("vigil.test.notices", b"not json")
        await bus.announce("vigil.test.notices", Ping(n=7))
        assert await next_item(heard) == 7
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
