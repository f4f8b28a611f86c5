"""The benchmark's load generators measure what they claim: `bench.pacer` sends on its
schedule whatever the server does (open loop), says when each alert was sent, and every
alert it sends is a new one; the latency of a step is never computed as negative."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from bench.generators import Sent, Target, pacer
from bench.platform_bench import latencies_ms

REQUESTS = 20


class HoldingServer:
    """Answers no request until it has received `expected` of them, then all at once: a
    generator that waits for answers before sending the next request never gets there."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.bodies: list[bytes] = []
        self.all_arrived = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            self.bodies.append(await reader.readexactly(length))
            if len(self.bodies) >= self.expected:
                self.all_arrived.set()
            await self.all_arrived.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()


async def test_the_pacer_sends_on_schedule_while_no_answer_came(tmp_path: Path) -> None:
    holding = HoldingServer(REQUESTS)
    server = await asyncio.start_server(holding.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        sent = await asyncio.wait_for(
            asyncio.to_thread(
                pacer,
                Target(port=port, path="/hooks/bench/am", token=""),
                alertname="Stamp",
                phase="test",
                rate=REQUESTS / 0.5,
                seconds=0.5,
            ),
            timeout=60,
        )
    assert sent.requests == REQUESTS
    assert sorted(sent.sent_ns) == list(range(REQUESTS))
    assert set(sent.answered_ns) == set(sent.sent_ns)
    assert all(sent.answered_ns[s] >= sent.sent_ns[s] for s in sent.sent_ns)
    assert sent.late_ms.keys() == {"p50", "p99", "max"}
    assert sent.cpu_seconds > 0
    alerts = [a for body in holding.bodies for a in json.loads(body)["alerts"]]
    assert sorted(int(a["labels"]["seq"]) for a in alerts) == list(range(REQUESTS))
    assert len({a["fingerprint"] for a in alerts}) == REQUESTS


async def test_a_burst_sends_every_alert_once_in_bodies_of_the_size_asked(tmp_path: Path) -> None:
    holding = HoldingServer(1)
    server = await asyncio.start_server(holding.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        sent = await asyncio.to_thread(
            pacer,
            Target(port=port, path="/hooks/bench/am", token=""),
            alertname="Three",
            phase="burst",
            burst=250,
            payload=100,
            concurrency=2,
        )
    assert [len(json.loads(body)["alerts"]) for body in holding.bodies] == [100, 100, 50]
    assert sent.alerts == 250
    assert sent.late_ms == {}


def test_a_step_stamped_before_its_alert_was_sent_is_a_benchmark_error() -> None:
    sent = Sent(
        requests=2,
        alerts=2,
        seconds=1.0,
        cpu_seconds=0.1,
        sent_ns={0: 1_000_000_000_000_000_000, 1: 1_000_000_000_000_000_000},
    )
    assert latencies_ms(sent, {0: ["1000000000.020000"]}) == {0: pytest.approx(20.0)}
    with pytest.raises(AssertionError, match=r"seq 1: the step ran 5\.0 ms before"):
        latencies_ms(sent, {1: ["999999999.995000"]})
