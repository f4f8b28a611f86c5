"""`python -m bench.pacer`: the platform benchmark's paced and burst load, in a process of
its own so that what it costs is not charged to what it measures.

Standard library only (no httpx, no pydantic: a Python process that imports little and
does little per request), raw HTTP/1.1 on keep-alive connections to 127.0.0.1.

- `--rate R --seconds S`: open loop. Request i is due at start + i/R whatever happened to
  the ones before: it goes out on an idle connection, or a new one if every connection
  waits for an answer, so a slow server never slows the schedule down. Every request's
  lateness (sent minus due) is recorded; the benchmark refuses a phase whose generator fell
  behind. Every body is built before the first one is due.
- `--burst N --payload K --concurrency C`: N alerts in bodies of K, C connections sending
  back to back (closed loop), as fast as the server answers.

Each alert carries the labels `alertname`, `phase`, `seq` (0, 1, ...) and `instance`, and the
fingerprint `<phase>-<seq>`. The result (JSON, `--out`): per seq, when its request was sent
and answered (`time.time_ns()`, the clock a step's `$EPOCHREALTIME` reads), the lateness
percentiles, the failures by kind, and the process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PRE_OPENED = 16
SPARE = 4  # idle connections kept ready while answers are slow
# A paced sender must send on time while the platform keeps both cores busy: it asks the
# kernel to run it first (it uses little CPU). Where that is not allowed it runs at the
# normal priority and says so; the benchmark then refuses the phases it falls behind in.
NICE = -10
ANSWER_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    port: int
    path: str
    token: str


@dataclass(slots=True)
class Outcome:
    sent_ns: dict[int, int] = field(default_factory=dict)  # first seq of a body → sent
    answered_ns: dict[int, int] = field(default_factory=dict)  # first seq → answered 2xx
    seqs: dict[int, list[int]] = field(default_factory=dict)  # first seq → every seq of it
    late_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def failed(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1


def bodies(*, alertname: str, phase: str, alerts: int, size: int) -> list[tuple[list[int], bytes]]:
    """Alertmanager webhook bodies (version 4) of `size` alerts each, `alerts` in all."""
    starts = datetime.now(UTC).isoformat()
    made = []
    for first in range(0, alerts, size):
        seqs = list(range(first, min(first + size, alerts)))
        document = {
            "version": "4",
            "status": "firing",
            "receiver": "vigil",
            "groupKey": f"{{}}:{{phase={phase!r}}}",
            "groupLabels": {"phase": phase},
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": alertname,
                        "phase": phase,
                        "seq": str(seq),
                        "instance": f"host-{seq % 1000:03d}",
                    },
                    "annotations": {"summary": f"bench alert {seq}"},
                    "startsAt": starts,
                    "fingerprint": f"{phase}-{seq}",
                }
                for seq in seqs
            ],
        }
        made.append((seqs, json.dumps(document, separators=(",", ":")).encode()))
    return made


def request(target: Target, body: bytes) -> bytes:
    auth = f"Authorization: Bearer {target.token}\r\n" if target.token else ""
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def answer_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response with a Content-Length body: its status code, and whether the
    server keeps the connection open (HTTP/1.1 without `Connection: close`)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length, keep = 0, head[0].startswith("HTTP/1.1")
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    if length:
        await reader.readexactly(length)
    return int(head[0].split()[1]), keep


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(target: Target) -> Connection:
    return await asyncio.open_connection("127.0.0.1", target.port)


async def exchange(connection: Connection, payload: bytes, first: int, outcome: Outcome) -> bool:
    """Send one request and read its answer; False when the connection cannot be used
    again (broken, or closed by the server)."""
    reader, writer = connection
    # Stamped before the bytes leave: write() may hand them to the kernel at once, and a
    # step could start before a stamp taken after it.
    outcome.sent_ns[first] = time.time_ns()
    writer.write(payload)
    try:
        status, keep = await asyncio.wait_for(answer_status(reader), ANSWER_TIMEOUT_SECONDS)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        outcome.failed(type(exc).__name__)
        return False
    if 200 <= status < 300:
        outcome.answered_ns[first] = time.time_ns()
    else:
        outcome.failed(f"HTTP {status}")
    return keep


async def paced(target: Target, prepared: list[tuple[list[int], bytes]], rate: float) -> Outcome:
    outcome = Outcome()
    idle: list[Connection] = [await connect(target) for _ in range(PRE_OPENED)]
    payloads = [(seqs, request(target, body)) for seqs, body in prepared]

    async def one(connection: Connection, payload: bytes, first: int) -> None:
        if await exchange(connection, payload, first, outcome):
            idle.append(connection)
        else:
            connection[1].close()

    async def spare() -> None:
        idle.append(await connect(target))

    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tasks:
        start = loop.time() + 0.05
        for index, (seqs, payload) in enumerate(payloads):
            due = start + index / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            # The longest idle first: every connection stays warm, none reaches the
            # server's keep-alive timeout and is closed under a request.
            connection = idle.pop(0) if idle else await connect(target)
            if len(idle) < SPARE:  # connect before a request waits for it
                tasks.create_task(spare())
            outcome.late_ms.append((loop.time() - due) * 1000)
            outcome.seqs[seqs[0]] = seqs
            tasks.create_task(one(connection, payload, seqs[0]))
    for _, writer in idle:
        writer.close()
    return outcome


async def burst(
    target: Target, prepared: list[tuple[list[int], bytes]], concurrency: int
) -> Outcome:
    outcome = Outcome()
    queue = list(reversed([(seqs, request(target, body)) for seqs, body in prepared]))

    async def client() -> None:
        connection = await connect(target)
        try:
            while queue:
                seqs, payload = queue.pop()
                outcome.seqs[seqs[0]] = seqs
                if not await exchange(connection, payload, seqs[0], outcome):
                    connection[1].close()
                    connection = await connect(target)
        finally:
            connection[1].close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcome


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def raise_priority() -> str:
    try:
        os.nice(NICE)
    except PermissionError:
        return "normal (not allowed to raise it)"
    return f"nice {NICE}"


def report(outcome: Outcome, priority: str) -> dict[str, Any]:
    sent, answered = {}, {}
    for first, seqs in outcome.seqs.items():
        for seq in seqs:
            if first in outcome.sent_ns:
                sent[seq] = outcome.sent_ns[first]
            if first in outcome.answered_ns:
                answered[seq] = outcome.answered_ns[first]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    late = outcome.late_ms or [0.0]
    return {
        "sent_ns": sent,
        "answered_ns": answered,
        "requests": len(outcome.answered_ns),
        "late_ms": {
            "p50": percentile(late, 0.5),
            "p99": percentile(late, 0.99),
            "max": max(late),
        },
        "failures": outcome.failures,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "priority": priority,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Vigil benchmark load generator.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--alertname", required=True)
    parser.add_argument("--phase", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=float, help="requests per second, open loop")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, help="alerts to send as fast as answered")
    parser.add_argument("--payload", type=int, default=1, help="alerts per request")
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()
    target = Target(port=options.port, path=options.path, token=options.token)
    if options.rate:
        alerts = round(options.rate * options.seconds) * options.payload
    elif options.burst:
        alerts = options.burst
    else:
        parser.error("give --rate (with --seconds) or --burst")
    prepared = bodies(
        alertname=options.alertname, phase=options.phase, alerts=alerts, size=options.payload
    )
    priority = raise_priority()
    if options.rate:
        outcome = asyncio.run(paced(target, prepared, options.rate))
    else:
        outcome = asyncio.run(burst(target, prepared, options.concurrency))
    options.out.write_text(json.dumps(report(outcome, priority)))


if __name__ == "__main__":
    main()
