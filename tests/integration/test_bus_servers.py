"""`VIGIL_NATS_URL` as a list: the bus connects past a server that is down, and when the
server it uses dies it moves on to another one of the list, on its own, and stays usable.
Two independent servers stand in for cluster nodes (the cluster itself, with replicated
streams: tests/fault/test_nats_cluster.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from tests.support.bus import SUBJECT, WAIT_SECONDS, Ping
from tests.support.nats import NatsServer, free_port, start_nats
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.errors import TransientError
from vigil.common.streams import stream_specs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_task_left_behind")]


async def publish_when_back(bus: JetStreamBus, n: int) -> None:
    """Provision and publish, again until it works: the bus is reconnecting meanwhile."""
    deadline = time.monotonic() + 3 * WAIT_SECONDS  # a publish lost in the switch waits 5 s
    while True:
        try:
            await bus.ensure_streams(stream_specs())
            await bus.publish(SUBJECT, Ping(n=n), msg_id=f"ping-{n}")
        except TransientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        return


async def stored_on(server: NatsServer) -> int:
    client = await nats.connect(server.url)
    try:
        info = await client.jetstream().stream_info("STEPS")
    finally:
        await client.close()
    return int(info.state.messages)


async def test_the_bus_moves_to_the_next_server_of_its_list_when_its_own_dies(
    tmp_path: Path,
) -> None:
    first = start_nats(tmp_path / "first")
    second = start_nats(tmp_path / "second")
    never = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    try:
        bus = await JetStreamBus.connect(f"{never}, {first.url} ,{second.url}", name="test-servers")
        try:
            first.kill()  # the bus, wherever it was, can only be on the second now
            await publish_when_back(bus, 1)
            assert await stored_on(second) == 1

            first = start_nats(tmp_path / "first", port=first.port)
            second.kill()  # and now only on the first
            await publish_when_back(bus, 2)
            assert bus.connected
            assert await stored_on(first) == 1
        finally:
            await bus.close()
    finally:
        first.stop()
        second.stop()
