"""Fixtures of the integration suite: a connected, provisioned bus on a fresh server, a plain
nats.py client to look at the server from outside, and a guard against leftover tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.streams import stream_specs


@pytest.fixture
async def no_task_left_behind() -> AsyncIterator[None]:
    """Fail the test if it leaves a task running on the loop (consumers, heartbeats …)."""
    yield
    for _ in range(5):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    assert not left, f"tasks left behind: {left}"


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[JetStreamBus]:
    bus = await JetStreamBus.connect(nats_url, name="test-bus")
    await bus.ensure_streams(stream_specs())
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def raw(nats_url: str) -> AsyncIterator[Client]:
    """A plain nats.py client, to look at (and poke) the server from outside the bus."""
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def js(raw: Client) -> JetStreamContext:
    return raw.jetstream()
