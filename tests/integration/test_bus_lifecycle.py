"""JetStreamBus's life cycle against a real nats-server: shutting a consumer down, closing,
connecting, and a dead letter that cannot be written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.support.bus import (
    DLQ_SPEC,
    SUBJECT,
    WAIT_SECONDS,
    WORKER_SPEC,
    Ping,
    Received,
    consuming,
    next_item,
    recorder,
    until_pulling,
    until_stream_empty,
)
from tests.support.nats import free_port
from vigil.common import subjects
from vigil.common.adapters.jetstream import FETCH_TIMEOUT_SECONDS, JetStreamBus
from vigil.common.adapters.nats_connection import CONNECT_TIMEOUT_SECONDS
from vigil.common.bus import Delivery
from vigil.common.errors import TransientError
from vigil.common.messages import DeadLetter
from vigil.common.streams import stream_specs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_task_left_behind")]


# --- shutdown --------------------------------------------------------------------------


async def test_cancelled_consumer_hands_in_flight_messages_back_at_once(
    bus: JetStreamBus, js: JetStreamContext
) -> None:
    """Shutdown naks what is in flight: a restarted consumer gets it now, not after ack_wait."""
    spec = dataclasses.replace(WORKER_SPEC, ack_wait_seconds=30.0)
    started: Received[Ping] = asyncio.Queue()

    async def stuck(message: Ping, delivery: Delivery) -> None:
        started.put_nowait((message, delivery))
        await asyncio.Event().wait()

    await bus.publish(SUBJECT, Ping(n=1), msg_id="interrupted")
    async with consuming(bus, spec, Ping, stuck):
        _, first = await next_item(started)

    received: Received[Ping] = asyncio.Queue()
    async with consuming(bus, spec, Ping, recorder(received)):
        _, second = await next_item(received, timeout=3.0)
        await until_stream_empty(js, subjects.STEPS_STREAM)

    assert (first.delivery, second.delivery) == (1, 2)


# --- connection lifecycle ----------------------------------------------------------------


async def test_close_after_a_consumer_ran_is_prompt(nats_url: str, js: JetStreamContext) -> None:
    """Shutdown (`vigil up` Ctrl-C, a pod's SIGTERM) must not stall on the bus."""
    bus = await JetStreamBus.connect(nats_url, name="closing")
    try:
        await bus.ensure_streams(stream_specs())
        received: Received[Ping] = asyncio.Queue()
        async with consuming(bus, WORKER_SPEC, Ping, recorder(received)):
            await until_pulling(js, WORKER_SPEC)
            # Let a long poll expire and the next begin: that is every idle consumer's life.
            await asyncio.sleep(FETCH_TIMEOUT_SECONDS + 0.5)
    finally:
        started = time.monotonic()
        await bus.close()
        took = time.monotonic() - started

    assert took < 3.0, f"close() took {took:.1f} s"
    assert not bus.connected


async def test_connect_to_absent_server_raises_transient_error() -> None:
    with pytest.raises(TransientError, match="cannot connect to NATS"):
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + 5):
            await JetStreamBus.connect(f"nats://127.0.0.1:{free_port()}", name="nobody")


# --- a dead letter that cannot be written -----------------------------------------------


async def test_message_whose_dead_letter_failed_is_dead_lettered_later(
    bus: JetStreamBus, raw: Client, js: JetStreamContext
) -> None:
    """DESIGN §6: no accepted message is lost, even if the DLQ is briefly unavailable."""
    spec = dataclasses.replace(WORKER_SPEC, max_deliver=2)
    deliveries: asyncio.Queue[int] = asyncio.Queue()

    async def failing(message: Ping, delivery: Delivery) -> None:
        deliveries.put_nowait(delivery.delivery)
        raise TransientError("downstream unavailable", retry_after=0.1)

    # The DLQ is unavailable: its stream is gone and whoever answers says so.
    await js.delete_stream(subjects.DLQ_STREAM)
    refused = asyncio.Event()

    async def unavailable(msg: Msg) -> None:
        await msg.respond(b'{"error": {"code": 503, "description": "DLQ unavailable"}}')
        refused.set()

    refuser = await raw.subscribe(subjects.all_dlq(), cb=unavailable)

    original = Ping(n=9)
    await bus.publish(SUBJECT, original, msg_id="undeliverable")
    letters: Received[DeadLetter] = asyncio.Queue()
    async with consuming(bus, spec, Ping, failing):
        assert [await next_item(deliveries), await next_item(deliveries)] == [1, 2]
        async with asyncio.timeout(WAIT_SECONDS):
            await refused.wait()
        # The DLQ is back.
        await refuser.unsubscribe()
        await bus.ensure_streams(stream_specs())
        async with consuming(bus, DLQ_SPEC, DeadLetter, recorder(letters)):
            letter, _ = await next_item(letters, timeout=3.0)
            await until_stream_empty(js, subjects.STEPS_STREAM)

    assert Ping.model_validate_json(letter.data) == original
