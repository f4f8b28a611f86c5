"""Helpers for tests that drive `JetStreamBus` against a real server: a tiny contract, a
worker consumer spec, running `consume` as a scoped task, and event-based waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.bus import Delivery, Handler
from vigil.common.messages import Contract
from vigil.common.streams import ConsumerSpec

WAIT_SECONDS = 10.0


async def round_trip(client: Client) -> None:
    """Return once the server has read every command `client` wrote before the call.

    One `flush()` is not that barrier in nats.py 2.16: its PING goes straight to the socket,
    while a SUB or PUB written just before still waits in the pending buffer for the
    flusher task, so the server can answer the PING before it sees the SUB (and drop a
    message published in between). The flusher task runs before the first PONG can be
    read, so the second PING is behind everything written before the call.
    """
    await client.flush()
    await client.flush()


class Ping(Contract):
    """A tiny contract for these tests."""

    schema_name: ClassVar[str] = "test.v1"

    n: int
    note: str = ""


WORKER = "test-worker"
SUBJECT = subjects.steps("cli")
# Production batching and concurrency; a short ack_wait so that absence checks are quick.
WORKER_SPEC = ConsumerSpec(
    stream=subjects.STEPS_STREAM,
    durable=WORKER,
    filter_subject=SUBJECT,
    ack_wait_seconds=1.0,
    max_deliver=3,
)
DLQ_SPEC = ConsumerSpec(
    stream=subjects.DLQ_STREAM,
    durable="dlq-reader",
    filter_subject=subjects.dlq(subjects.STEPS_STREAM, WORKER),
)

type Received[T] = asyncio.Queue[tuple[T, Delivery]]


@contextlib.asynccontextmanager
async def consuming[T: Contract](
    bus: JetStreamBus, spec: ConsumerSpec, model: type[T], handler: Handler[T]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `bus.consume` as a task for the block; cancel it and wait for it on exit."""
    task = asyncio.create_task(bus.consume(spec, model, handler), name=f"consume {spec.durable}")
    try:
        yield task
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves: do not swallow it


def recorder[T: Contract](queue: Received[T]) -> Handler[T]:
    """A handler that succeeds and records what it got."""

    async def handle(message: T, delivery: Delivery) -> None:
        queue.put_nowait((message, delivery))

    return handle


async def next_item[X](queue: asyncio.Queue[X], timeout: float = WAIT_SECONDS) -> X:
    async with asyncio.timeout(timeout):
        return await queue.get()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_SECONDS
) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def stored(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)


async def until_stream_empty(js: JetStreamContext, stream: str) -> None:
    """On a work-queue stream a message is removed when acknowledged (or terminated)."""

    async def empty() -> bool:
        return await stored(js, stream) == 0

    await eventually(empty, f"{stream} is empty (every message settled)")


async def until_pulling(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Wait until the consumer exists and has a pull request waiting (it is idle)."""

    async def waiting() -> bool:
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            return False
        return bool(info.num_waiting)

    await eventually(waiting, f"{spec.durable} waits for messages")


def drained[X](queue: asyncio.Queue[X]) -> list[X]:
    items: list[X] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def past_ack_wait(spec: ConsumerSpec) -> None:
    """Let ack_wait elapse, so a redelivery that was going to happen has happened."""
    await asyncio.sleep(spec.ack_wait_seconds + 0.5)


async def config_bucket_messages(nats_url: str) -> list[tuple[str, bytes]]:
    """Every message the `vigil-config` KV bucket's stream still stores, in order: each
    key's value (and any older revision the server kept), as a reader of the bucket sees
    it. What a secret-scanning test reads."""
    connection = await nats.connect(nats_url, name="test-bucket-scan")
    try:
        js = connection.jetstream()
        stream = f"KV_{subjects.CONFIG_BUCKET}"
        state = (await js.stream_info(stream)).state
        found: list[tuple[str, bytes]] = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            try:
                message = await js.get_msg(stream, sequence)
            except nats.js.errors.NotFoundError:
                continue  # replaced by a newer revision, or deleted
            found.append((message.subject or "", message.data or b""))
        return found
    finally:
        await connection.close()
