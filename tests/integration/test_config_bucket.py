"""The config bucket on a real nats-server: a watch loads every value before it says it
has loaded, however the server's replies and deliveries interleave; a listing of the keys
does not leave its consumer on the server."""

from __future__ import annotations

import asyncio
import contextlib

import nats

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.jetstream_kv import JetStreamBucket

WAIT_SECONDS = 20
ROUNDS = 100  # nats-py's own marker came first about once in 800 watches on a loaded machine


async def initial_load(bucket: JetStreamBucket) -> dict[str, bytes | None]:
    loaded: dict[str, bytes | None] = {}
    async with contextlib.aclosing(bucket.watch()) as changes, asyncio.timeout(WAIT_SECONDS):
        async for change in changes:
            if change is None:
                return loaded
            loaded[change[0]] = change[1]
    raise AssertionError("the watch ended before its initial load")


async def test_an_empty_bucket_is_loaded_at_once(bus: JetStreamBus) -> None:
    bucket = await bus.config_bucket("empty-config")
    assert await initial_load(bucket) == {}
    assert await bucket.keys() == []


async def test_every_watch_loads_every_value_before_it_says_loaded(bus: JetStreamBus) -> None:
    bucket = await bus.config_bucket("loaded-config")
    for n in range(5):
        await bucket.put(f"def.workflow.ops.w{n}", b"x" * 2_000)
    await bucket.delete("def.workflow.ops.w4")
    wanted = {f"def.workflow.ops.w{n}": b"x" * 2_000 for n in range(4)}
    for _ in range(ROUNDS):
        assert await initial_load(bucket) == {**wanted, "def.workflow.ops.w4": None}
        assert await bucket.keys() == sorted(wanted)


async def test_after_the_load_a_watch_sees_writes_and_deletes(bus: JetStreamBus) -> None:
    bucket = await bus.config_bucket("changing-config")
    await bucket.put("def.sink.ops.log", b"1")
    async with contextlib.aclosing(bucket.watch()) as changes, asyncio.timeout(WAIT_SECONDS):
        assert await anext(changes) == ("def.sink.ops.log", b"1")
        assert await anext(changes) is None
        await bucket.put("def.sink.ops.log", b"2")
        assert await anext(changes) == ("def.sink.ops.log", b"2")
        await bucket.delete("def.sink.ops.log")
        assert await anext(changes) == ("def.sink.ops.log", None)
    assert await bucket.keys() == []


async def test_a_listing_of_the_keys_leaves_no_consumer_behind(
    bus: JetStreamBus, nats_url: str
) -> None:
    """The server allows 1,000 consumers on the bucket's stream; the controller lists the
    keys at every report it publishes, and a listing's consumer used to stay 5 minutes."""
    bucket = await bus.config_bucket("listed-config")
    await bucket.put("def.sink.ops.log", b"1")
    for _ in range(3):
        assert await bucket.keys() == ["def.sink.ops.log"]

    observer = await nats.connect(nats_url)
    try:
        js = observer.jetstream()
        async with asyncio.timeout(WAIT_SECONDS * 3):  # the inactivity bound, then the sweep
            while (await js.stream_info("KV_listed-config")).state.consumer_count > 0:
                await asyncio.sleep(0.2)  # polling the server, which removes them in time
    finally:
        await observer.close()
