"""The nats-server fixtures themselves: JetStream is up when they yield, and a server can be
restarted on its port and store (what the fault suites rely on)."""

from __future__ import annotations

import nats
import pytest

from tests.support.nats import NatsServer, start_nats

pytestmark = pytest.mark.integration


async def test_session_server_answers_jetstream(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        info = await client.jetstream().account_info()
    finally:
        await client.close()
    assert nats_server.url.startswith("nats://127.0.0.1:")
    assert info.limits is not None


async def test_killed_server_restarts_on_its_port_with_its_store(
    fresh_nats_server: NatsServer,
) -> None:
    client = await nats.connect(fresh_nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"1")
    finally:
        await client.close()

    fresh_nats_server.kill()
    assert not fresh_nats_server.running
    restarted = start_nats(fresh_nats_server.store_dir, port=fresh_nats_server.port)
    try:
        client = await nats.connect(restarted.url)
        try:
            info = await client.jetstream().stream_info("KEPT")
        finally:
            await client.close()
    finally:
        restarted.stop()

    assert restarted.url == fresh_nats_server.url
    assert info.state.messages == 1
