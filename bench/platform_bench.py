"""Platform benchmark: the DESIGN §9 figures, measured against `vigil up` (`make bench`).

Starts the embedded platform in a subprocess (nats-server, SQLite, five services) on free
ports, with a definitions folder written here, and measures, printing each figure as it
completes:

1. alerts accepted per second: Alertmanager payloads of 100 alerts, 8 concurrent clients;
2. alerts processed per second: from the first POST of (1) until the engine has recorded
   every alert of the ALERTS stream (`/api/v1/stats`: `alerts.recorded == alerts.received`);
3. single-alert webhook requests per second, 16 concurrent clients (and again with a
   minimal HTTP/1.1 client, as a note: httpx costs more CPU per request than ingest);
4. latency from an accepted alert (its POST answered 2xx) to the first step of its
   execution running, at a steady 100 alerts/s;
5. workflow executions of three trivial steps completed per second, after a burst;
6. resident memory of every service and of nats-server, under load and at the end.

It also records the CPU seconds every process spent in each phase: that is where the time
goes. The figures go to `docs/benchmarks.md` under "## Embedded platform"; other sections
are kept. A measurement, not a test: nothing asserts a target. `--quick` makes every phase
about five times shorter, for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.platform import Platform, start_platform

SECTION = "## Embedded platform"
DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HOOK = "/hooks/bench/am"
PROCESSES = ("ingest", "engine", "executor", "sink", "controller", "nats", "up")
MB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT_SECONDS = 30.0
DRAIN_TIMEOUT_SECONDS = 600.0  # 10 minutes, then report what was reached
POLL_SECONDS = 0.1
SAMPLE_SECONDS = 0.5
UP_TIMEOUT_SECONDS = 90.0
UP_EVENT = re.compile(r"\]\s+vigil_up\s")
DISTURBED_SHARE = 0.05  # of the machine's CPU time, used by processes not of this run

DEFINITIONS = """\
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: bench}
spec: {type: alertmanager}
---
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: log, namespace: bench}
spec: {type: log}
---
# One trivial step: processing an alert measures record + match + execution.
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: noop, namespace: bench}
spec:
  trigger: {sources: [am], matchers: ['alertname="Bench"']}
  steps:
    - name: check
      condition: 'true'
---
# Three trivial steps, one of each kind a service runs: executor, engine, sink.
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: three, namespace: bench}
spec:
  trigger: {sources: [am], matchers: ['alertname="Three"']}
  steps:
    - name: run
      cli: {command: ["true"]}
    - name: check
      condition: 'true'
    - name: tell
      notify: {sinks: [log], title: "{{ alert.labels.alertname }} {{ alert.labels.seq }}"}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    """How long and how much each phase sends."""

    accept_seconds: float = 10.0
    accept_min_alerts: int = 5000
    accept_concurrency: int = 8
    single_seconds: float = 10.0
    single_concurrency: int = 16
    latency_seconds: float = 20.0
    latency_rate: float = 100.0
    burst_alerts: int = 2000
    burst_concurrency: int = 8
    payload_alerts: int = 100

    def quick(self) -> Scale:
        return Scale(
            accept_seconds=self.accept_seconds / 5,
            accept_min_alerts=self.accept_min_alerts // 5,
            single_seconds=self.single_seconds / 5,
            latency_seconds=self.latency_seconds / 5,
            burst_alerts=self.burst_alerts // 5,
        )


# --- what is sent ----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Payloads:
    """Alertmanager webhook bodies of `size` alerts, each alert new (labels, fingerprint)."""

    alertname: str
    phase: str
    size: int
    sent: int = 0

    def alert(self) -> dict[str, Any]:
        seq = self.sent
        self.sent += 1
        labels = {
            "alertname": self.alertname,
            "phase": self.phase,
            "seq": str(seq),
            "instance": f"host-{seq % 1000:03d}",
        }
        return {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": f"bench alert {seq}"},
            "startsAt": datetime.now(UTC).isoformat(),
            "fingerprint": hashlib.blake2b(
                f"{self.phase}/{seq}".encode(), digest_size=8
            ).hexdigest(),
        }

    def body(self) -> tuple[bytes, int]:
        alerts = [self.alert() for _ in range(self.size)]
        document = {
            "version": "4",
            "status": "firing",
            "receiver": "vigil",
            "groupKey": f"{{}}:{{phase={self.phase!r}}}",
            "groupLabels": {"phase": self.phase},
            "alerts": alerts,
        }
        return json.dumps(document).encode(), len(alerts)

    def bodies(self, limit: int | None = None) -> Iterator[tuple[bytes, int]]:
        while limit is None or self.sent < limit:
            yield self.body()


# --- sending -----------------------------------------------------------------------------


@dataclass(slots=True)
class Load:
    """What a load generator got back: only 2xx answers count as accepted."""

    alerts: int = 0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def failed(self) -> str:
        return ", ".join(f"{n}x {what}" for what, n in self.failures.most_common()) or "none"


def new_client(connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT_SECONDS,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Content-Type": "application/json"},
    )


async def post(client: httpx.AsyncClient, url: str, body: bytes, load: Load) -> bool:
    try:
        answer = await client.post(url, content=body)
    except httpx.HTTPError as exc:
        load.failures[type(exc).__name__] += 1
        return False
    if not answer.is_success:
        load.failures[f"HTTP {answer.status_code}"] += 1
        return False
    return True


async def send(
    url: str,
    bodies: Iterator[tuple[bytes, int]],
    *,
    concurrency: int,
    keep_going: Callable[[Load], bool],
    start: float,
) -> Load:
    """`concurrency` clients, each with one connection, POST bodies back to back."""
    load = Load()

    async def client_loop() -> None:
        async with new_client(1) as client:
            while keep_going(load):
                item = next(bodies, None)
                if item is None:
                    return
                body, count = item
                if await post(client, url, body, load):
                    load.alerts += count
                    load.requests += 1

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    load.seconds = time.monotonic() - start
    return load


async def send_raw(
    port: int,
    path: str,
    bodies: Iterator[tuple[bytes, int]],
    *,
    concurrency: int,
    keep_going: Callable[[Load], bool],
    start: float,
) -> Load:
    """As `send`, through a minimal HTTP/1.1 keep-alive client on asyncio streams: a load
    generator cheap enough not to be what limits the figure on a 2-core machine."""
    load = Load()

    async def client_loop() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while keep_going(load):
                item = next(bodies, None)
                if item is None:
                    return
                body, count = item
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                status = await read_response(reader)
                if 200 <= status < 300:
                    load.alerts += count
                    load.requests += 1
                else:
                    load.failures[f"HTTP {status}"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            load.failures[type(exc).__name__] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    load.seconds = time.monotonic() - start
    return load


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
    if "content-length" not in headers:
        msg = "response without Content-Length"
        raise ValueError(msg)
    await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1])


def for_duration(start: float, seconds: float, *, min_alerts: int = 0) -> Callable[[Load], bool]:
    """Until `seconds` passed and at least `min_alerts` were accepted (at most 6x longer)."""

    def keep_going(load: Load) -> bool:
        elapsed = time.monotonic() - start
        return elapsed < seconds or (load.alerts < min_alerts and elapsed < 6 * seconds)

    return keep_going


# --- watching the platform ----------------------------------------------------------------


async def stats(api: httpx.AsyncClient) -> dict[str, Any]:
    answer = await api.get("/api/v1/stats")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def active(snapshot: dict[str, Any]) -> int:
    counts = snapshot["executions"]
    return int(counts.get("pending", 0)) + int(counts.get("running", 0))


def drained(snapshot: dict[str, Any]) -> bool:
    alerts = snapshot["alerts"]
    return bool(alerts["recorded"] >= alerts["received"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    recorded: int  # since the start of the phase
    received: int
    seconds: float
    complete: bool
    stats_errors: int
    last: dict[str, Any]


async def until_drained(
    bench: Bench,
    *,
    start: float,
    since: dict[str, Any],
    load_done: asyncio.Event | None = None,
    quiet: bool = False,
    timeout: float = DRAIN_TIMEOUT_SECONDS,
) -> Drain:
    """Poll stats until every received alert is recorded (and, if `quiet`, no execution is
    pending or running), once the load is done; give up after `timeout`."""
    errors = 0
    snapshot = since
    while True:
        try:
            snapshot = await stats(bench.api)
        except httpx.HTTPError:
            errors += 1
            bench.check_running()
        now = time.monotonic()
        done = (load_done is None or load_done.is_set()) and drained(snapshot)
        if quiet:
            done = done and active(snapshot) == 0
        if done or now - start > timeout:
            return Drain(
                recorded=snapshot["alerts"]["recorded"] - since["alerts"]["recorded"],
                received=snapshot["alerts"]["received"] - since["alerts"]["received"],
                seconds=now - start,
                complete=done,
                stats_errors=errors,
                last=snapshot,
            )
        await asyncio.sleep(POLL_SECONDS)


async def executions(api: httpx.AsyncClient, *, workflow: str, phase: str) -> list[dict[str, Any]]:
    """Every execution of `workflow` started by an alert of `phase`, all pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"workflow": workflow, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        answer = await api.get("/api/v1/executions", params=params)
        answer.raise_for_status()
        page = answer.json()
        found.extend(e for e in page["items"] if e["alert"]["labels"].get("phase") == phase)
        cursor = page["next"]
        if not cursor:
            return found


def epoch(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


# --- resources -----------------------------------------------------------------------------


def read_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        return None
    return None


def read_cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process and of its reaped children (the cli steps)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / CLOCK_TICKS


@dataclass(slots=True)
class Resources:
    """Resident memory (peak over samples, last) and CPU seconds of every child process."""

    platform: Platform
    pids: dict[str, int] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    last_mb: dict[str, float] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    cpu_of_dead: dict[str, float] = field(default_factory=dict)
    cpu_seen: dict[str, float] = field(default_factory=dict)
    sampling: bool = False

    def pid(self, name: str) -> int | None:
        if name == "up":  # the supervisor itself
            return self.platform.process.pid
        known = self.pids.get(name)
        if known is not None and Path(f"/proc/{known}").exists():
            return known
        found = self.platform.service_pids(name)
        if not found:
            return None
        if known is not None:  # it died and the supervisor started it again
            self.restarts[name] += 1
            self.cpu_of_dead[name] = self.cpu_of_dead.get(name, 0.0) + self.cpu_seen.get(name, 0.0)
        self.pids[name] = found[0]
        return found[0]

    def sample(self) -> None:
        for name in PROCESSES:
            pid = self.pid(name)
            rss = read_rss_mb(pid) if pid else None
            if rss is not None:
                self.last_mb[name] = rss
                if self.sampling:
                    self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss)

    def cpu(self) -> dict[str, float]:
        """Cumulative CPU seconds per process, the bench's own included."""
        result = {}
        for name in PROCESSES:
            pid = self.pid(name)
            seconds = read_cpu_seconds(pid) if pid else None
            if seconds is not None:
                self.cpu_seen[name] = seconds
            result[name] = self.cpu_of_dead.get(name, 0.0) + self.cpu_seen.get(name, 0.0)
        result["bench"] = time.process_time()
        result["machine"] = machine_busy_seconds()
        return result

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    name: str
    seconds: float
    cpu: dict[str, float]  # per process, plus "bench" and "machine" (all cores, busy)

    @property
    def others(self) -> float:
        """CPU seconds the rest of the machine used meanwhile."""
        ours = sum(self.cpu.get(name, 0.0) for name in [*PROCESSES, "bench"])
        return max(0.0, self.cpu.get("machine", 0.0) - ours)


@contextlib.asynccontextmanager
async def phase(bench: Bench, name: str) -> AsyncIterator[None]:
    """Record the wall time and the CPU seconds each process spent in the block."""
    resources = bench.resources
    started, before = time.monotonic(), resources.cpu()
    resources.sampling = True
    try:
        yield
    finally:
        resources.sampling = False
        after = resources.cpu()
        cpu = {process: after[process] - before.get(process, 0.0) for process in after}
        bench.report.phases.append(Phase(name=name, seconds=time.monotonic() - started, cpu=cpu))


# --- the figures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    name: str
    measured: str
    target: str
    peers: str
    met: bool | None = None


@dataclass(slots=True)
class Report:
    figures: list[Figure] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        verdict = {True: "meets", False: "MISSES", None: "?"}[figure.met]
        print(f"{figure.name}: {figure.measured}  (target {figure.target}: {verdict})")

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}")


class PlatformExited(RuntimeError):
    """`vigil up` stopped during the run: the figures would mean nothing."""


@dataclass(slots=True, kw_only=True)
class Bench:
    """What every phase needs: the platform, an API client, the scale, where results go."""

    platform: Platform
    api: httpx.AsyncClient
    scale: Scale
    report: Report
    resources: Resources

    @property
    def hook(self) -> str:
        return self.platform.url + HOOK

    def check_running(self) -> None:
        code = self.platform.process.poll()
        if code is not None:
            msg = f"vigil up exited with {code} during the run"
            raise PlatformExited(msg)


def wait_until_up(running: Platform, report: Report) -> None:
    """`start_platform` returns once ingest answers; wait for `vigil up` to report all five
    services ready (its `vigil_up` line), so a service that fails to start is seen now."""
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    while not UP_EVENT.search(running.logs()):
        if running.process.poll() is not None:
            msg = f"vigil up exited with {running.process.returncode} while starting"
            raise PlatformExited(msg)
        if time.monotonic() > deadline:
            report.note(f"vigil up did not log `vigil_up` within {UP_TIMEOUT_SECONDS:.0f} s")
            return
        time.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


async def accepted_and_processed(bench: Bench) -> None:
    """(1) 100-alert payloads for ~10 s, and (2) until the engine recorded all of them."""
    since = await stats(bench.api)
    payloads = Payloads(alertname="Bench", phase="accept", size=bench.scale.payload_alerts)
    load_done = asyncio.Event()
    async with phase(bench, "1+2 accept 100-alert payloads, process"):
        start = time.monotonic()
        watcher = asyncio.create_task(
            until_drained(bench, start=start, since=since, load_done=load_done)
        )
        load = await send(
            bench.hook,
            payloads.bodies(),
            concurrency=bench.scale.accept_concurrency,
            keep_going=for_duration(
                start, bench.scale.accept_seconds, min_alerts=bench.scale.accept_min_alerts
            ),
            start=start,
        )
        load_done.set()
        rate = load.alerts / load.seconds
        bench.report.add(
            Figure(
                name="alerts accepted per second (payloads of 100)",
                measured=f"{rate:,.0f}/s ({load.alerts:,} alerts in {load.seconds:.1f} s)",
                target="≥ 10,000/s",
                peers="Keep 0.54: 5,820/s, answered before anything was stored",
                met=rate >= 10_000,
            )
        )
        bench.report.note(
            f"accept: {load.requests} requests answered 2xx; failures: {load.failed()}"
        )
        drain = await watcher
    processed = drain.recorded / drain.seconds
    reached = "" if drain.complete else f", TIMED OUT at {drain.recorded:,}/{drain.received:,}"
    bench.report.add(
        Figure(
            name="alerts processed per second (recorded and matched)",
            measured=f"{processed:,.0f}/s ({drain.recorded:,} alerts in {drain.seconds:.1f} s"
            f"{reached})",
            target="≥ 5,000/s",
            peers="Keep, same run: 36.6/s (a 10 s burst took 26 min to clear)",
            met=drain.complete and processed >= 5_000,
        )
    )
    bench.report.note(
        f"process: recording finished {drain.seconds - load.seconds:.1f} s after the last "
        f"answer; executions then: {drain.last['executions']}; stats errors: "
        f"{drain.stats_errors}"
    )


async def single_alert_requests(bench: Bench) -> None:
    """(3) 1-alert payloads, 16 concurrent clients, ~10 s; then wait until processed."""
    since = await stats(bench.api)
    payloads = Payloads(alertname="Bench", phase="single", size=1)
    async with phase(bench, "3 single-alert requests"):
        start = time.monotonic()
        load = await send(
            bench.hook,
            payloads.bodies(),
            concurrency=bench.scale.single_concurrency,
            keep_going=for_duration(start, bench.scale.single_seconds),
            start=start,
        )
    rate = load.requests / load.seconds
    bench.report.add(
        Figure(
            name="single-alert webhook requests per second",
            measured=f"{rate:,.0f}/s ({load.requests:,} requests in {load.seconds:.1f} s)",
            target="≥ 2,000/s",
            peers="Keep: 51-67/s",
            met=rate >= 2_000,
        )
    )
    cpu = bench.report.phases[-1].cpu
    bench.report.note(
        f"single: httpx load generator {cpu['bench'] / max(load.requests, 1) * 1e3:.2f} ms CPU "
        f"per request, ingest {cpu['ingest'] / max(load.requests, 1) * 1e3:.2f} ms; "
        f"failures: {load.failed()}"
    )
    async with phase(bench, "3' drain single alerts"):
        drain = await until_drained(bench, start=start, since=since, quiet=True)
    bench.report.note(
        f"single: all {drain.recorded:,} recorded and executed {drain.seconds:.1f} s after the "
        f"first POST ({drain.recorded / drain.seconds:,.0f}/s)"
        + ("" if drain.complete else f" — TIMED OUT; stats then: {drain.last}")
    )
    await single_alert_requests_raw(bench)


async def single_alert_requests_raw(bench: Bench) -> None:
    """(3b) the same with a minimal client: how much of (3) the httpx load generator costs."""
    since = await stats(bench.api)
    payloads = Payloads(alertname="Bench", phase="single-raw", size=1)
    async with phase(bench, "3b single-alert requests, minimal client"):
        start = time.monotonic()
        load = await send_raw(
            bench.platform.http_port,
            HOOK,
            payloads.bodies(),
            concurrency=bench.scale.single_concurrency,
            keep_going=for_duration(start, bench.scale.single_seconds),
            start=start,
        )
    cpu = bench.report.phases[-1].cpu
    bench.report.note(
        f"single, minimal asyncio HTTP/1.1 client instead of httpx: "
        f"{load.requests / load.seconds:,.0f} requests/s ({load.requests:,} in "
        f"{load.seconds:.1f} s; load generator {cpu['bench'] / max(load.requests, 1) * 1e3:.2f} "
        f"ms CPU per request, ingest {cpu['ingest'] / max(load.requests, 1) * 1e3:.2f} ms); "
        f"failures: {load.failed()}"
    )
    async with phase(bench, "3b' drain"):
        await until_drained(bench, start=start, since=since, quiet=True)


@dataclass(frozen=True, slots=True)
class Sent:
    at: float  # time.time() when the POST was sent
    accepted: float  # time.time() when it was answered 2xx


async def paced_alerts(bench: Bench, load: Load) -> dict[str, Sent]:
    """Single `Three` alerts at a steady rate; when each was sent and answered 2xx, by seq."""
    payloads = Payloads(alertname="Three", phase="latency", size=1)
    count = round(bench.scale.latency_rate * bench.scale.latency_seconds)
    sent: dict[str, Sent] = {}

    async def one(client: httpx.AsyncClient, seq: int) -> None:
        body, _ = payloads.body()
        at = time.time()
        if await post(client, bench.hook, body, load):
            sent[str(seq)] = Sent(at, time.time())

    loop = asyncio.get_running_loop()
    async with new_client(64) as client, asyncio.TaskGroup() as tasks:
        start = loop.time()
        for seq in range(count):
            delay = start + seq / bench.scale.latency_rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.create_task(one(client, seq))
        load.seconds = loop.time() - start
    return sent


async def first_steps_started(
    bench: Bench, expected: set[str], *, timeout: float
) -> dict[str, float]:
    """When the first step of each `latency` alert's execution started (epoch), by seq."""
    deadline = time.monotonic() + timeout
    while True:
        started = {}
        for execution in await executions(bench.api, workflow="three", phase="latency"):
            at = epoch(execution["steps"][0]["started_at"])
            if at is not None:
                started[execution["alert"]["labels"]["seq"]] = at
        if expected <= started.keys() or time.monotonic() > deadline:
            return started
        await asyncio.sleep(1.0)


async def latency_to_first_step(bench: Bench) -> None:
    """(4) accepted (2xx answer) → first step running, at a steady 100 alerts/s."""
    load = Load()
    async with phase(bench, "4 latency at 100 alerts/s"):
        accepted = await paced_alerts(bench, load)
    started = await first_steps_started(bench, set(accepted), timeout=120.0)
    latencies = [(started[s] - a.accepted) * 1000 for s, a in accepted.items() if s in started]
    from_sent = [(started[s] - a.at) * 1000 for s, a in accepted.items() if s in started]
    answers = [(a.accepted - a.at) * 1000 for a in accepted.values()]
    if not latencies:
        bench.report.note("latency: no execution of `three` started a step")
        return
    p50, p90, p99 = (percentile(latencies, f) for f in (0.50, 0.90, 0.99))
    bench.report.add(
        Figure(
            name="alert accepted → first step running, at 100 alerts/s",
            measured=f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, "
            f"max {max(latencies):.0f} ms ({len(latencies):,} alerts)",
            target="p50 ≤ 20 ms, p99 ≤ 100 ms",
            peers="Keep: alert merely visible after ~70-90 ms p50",
            met=p50 <= 20 and p99 <= 100,
        )
    )
    bench.report.note(
        f"latency: {len(accepted):,} accepted in {load.seconds:.1f} s "
        f"({len(accepted) / load.seconds:.0f}/s sent); min {min(latencies):.0f} ms; "
        f"{len(accepted) - len(latencies)} without a started step; failures: {load.failed()}"
    )
    bench.report.note(
        f"latency: the POSTs were answered in p50 {percentile(answers, 0.5):.0f} ms, p99 "
        f"{percentile(answers, 0.99):.0f} ms; from the POST *sent* to the first step running: "
        f"p50 {percentile(from_sent, 0.5):.0f} ms, p90 {percentile(from_sent, 0.9):.0f} ms, "
        f"p99 {percentile(from_sent, 0.99):.0f} ms"
    )


async def executions_completed(bench: Bench) -> None:
    """(5) a burst of `Three` alerts; executions succeeded / first POST → last finished."""
    async with phase(bench, "5' quiet before the burst"):
        await until_drained(bench, start=time.monotonic(), since=await stats(bench.api), quiet=True)
    since = await stats(bench.api)
    payloads = Payloads(alertname="Three", phase="burst", size=bench.scale.payload_alerts)
    async with phase(bench, "5 burst of 3-step executions"):
        first_post, start = time.time(), time.monotonic()
        load = await send(
            bench.hook,
            payloads.bodies(limit=bench.scale.burst_alerts),
            concurrency=bench.scale.burst_concurrency,
            keep_going=lambda _: True,
            start=start,
        )
        expected = since["executions"].get("succeeded", 0) + load.alerts
        drain = await until_succeeded(bench, expected, start=start, since=since)
    finished = await executions(bench.api, workflow="three", phase="burst")
    succeeded = [e for e in finished if e["state"] == "succeeded"]
    states = Counter(e["state"] for e in finished)
    last = max((epoch(e["finished_at"]) or 0.0 for e in succeeded), default=first_post)
    seconds = last - first_post
    rate = len(succeeded) / seconds if seconds > 0 else 0.0
    bench.report.add(
        Figure(
            name="workflow executions completed per second (3 trivial steps)",
            measured=f"{rate:,.0f}/s ({len(succeeded):,} succeeded in {seconds:.1f} s)",
            target="≥ 500/s",
            peers="Argo ~35/s tuned; StackStorm ~13/s",
            met=rate >= 500 and len(succeeded) == load.alerts,
        )
    )
    bench.report.note(
        f"burst: {load.alerts:,} alerts accepted in {load.seconds:.1f} s; executions by "
        f"state: {dict(states)}; failures: {load.failed()}"
        + ("" if drain.complete else f" — TIMED OUT; stats then: {drain.last}")
    )


async def until_succeeded(
    bench: Bench, expected: int, *, start: float, since: dict[str, Any]
) -> Drain:
    """Poll stats until `expected` executions succeeded, or nothing is left to run."""
    while True:
        drain = await until_drained(bench, start=start, since=since)
        succeeded = drain.last["executions"].get("succeeded", 0)
        if succeeded >= expected or active(drain.last) == 0 or not drain.complete:
            return drain
        await asyncio.sleep(POLL_SECONDS)


def memory_figure(resources: Resources, report: Report) -> None:
    """(6) the largest peak resident set of a Vigil service (nats-server, `vigil up` apart)."""
    if not any(n not in ("nats", "up") for n in resources.peak_mb):
        report.note("memory: no process could be sampled")
        return
    services = {n: mb for n, mb in resources.peak_mb.items() if n not in ("nats", "up")}
    name, peak = max(services.items(), key=lambda item: item[1])
    report.add(
        Figure(
            name="resident memory per service under load (largest peak of a service)",
            measured=f"{peak:.0f} MB ({name})",
            target="≤ 150 MB per service",
            peers="Keep: 475 MiB, one process",
            met=peak <= 150,
        )
    )
    print(memory_table(resources))


async def idle_round_trip(bench: Bench) -> None:
    """GET /healthz on a kept-alive connection, idle platform: the floor of every request."""
    await bench.api.get("/healthz")
    times = []
    for _ in range(20):
        began = time.perf_counter()
        (await bench.api.get("/healthz")).raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    bench.report.note(
        f"idle round trip, GET /healthz on a kept-alive connection: median "
        f"{percentile(times, 0.5):.1f} ms (max {max(times):.1f} ms)"
    )


async def measure(running: Platform, scale: Scale, report: Report) -> Resources:
    """Every phase in turn, sampling memory meanwhile; then the memory figure."""
    resources = Resources(running)
    resources.sample()
    sampler = asyncio.create_task(resources.run())
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=REQUEST_TIMEOUT_SECONDS) as api:
            bench = Bench(
                platform=running, api=api, scale=scale, report=report, resources=resources
            )
            await idle_round_trip(bench)
            for step in (
                accepted_and_processed,
                single_alert_requests,
                latency_to_first_step,
                executions_completed,
            ):
                await step(bench)
                bench.check_running()
        resources.sample()
        memory_figure(resources, report)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    if resources.restarts:
        report.note(f"RESTARTED during the run: {dict(resources.restarts)}")
    return resources


# --- the platform's own account -----------------------------------------------------------

LOG_LEVEL = re.compile(r"\[(warning|error|critical)\s*\]\s+(\S+)")
EXCEPTION = re.compile(r"^(\w+)\s*\| ((?:\w+\.)*\w+(?:Error|Exception|Input)): (.{0,160})")
REASON = re.compile(r"(?:reason|error)=(['\"])(.*?)\1")


def log_summary(text: str) -> list[str]:
    """Warnings and errors of `vigil-up.log`, counted by service, event and reason."""
    seen: Counter[str] = Counter()
    for line in text.splitlines():
        found = LOG_LEVEL.search(line)
        if found:
            service = line.split("|", 1)[0].strip() if "|" in line[:12] else "up"
            reason = REASON.search(line)
            why = f" ({reason.group(2).rsplit(': ', 1)[-1]})" if reason else ""
            seen[f"{service} {found.group(1)} {found.group(2)}{why}"] += 1
        elif raised := EXCEPTION.match(line):
            seen[f"{raised.group(1)} raised {raised.group(2)}: {raised.group(3)}"] += 1
    return [f"{n}x {what}" for what, n in seen.most_common(12)]


# --- the report ----------------------------------------------------------------------------


def machine() -> str:
    processor = platform.processor()
    if not processor:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    processor = line.split(":", 1)[1].strip()
                    break
    return f"{processor or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def figures_table(figures: list[Figure]) -> str:
    lines = ["| figure | measured | DESIGN target | peers, for scale |", "|---|---|---|---|"]
    for f in figures:
        mark = {True: "", False: " ✗", None: ""}[f.met]
        lines.append(f"| {f.name} | {f.measured}{mark} | {f.target} | {f.peers} |")
    return "\n".join(lines)


def memory_table(resources: Resources) -> str:
    lines = ["| process | peak under load, MB | at the end, MB |", "|---|---:|---:|"]
    for name in PROCESSES:
        peak, last = resources.peak_mb.get(name, 0.0), resources.last_mb.get(name, 0.0)
        lines.append(f"| {name} | {peak:.0f} | {last:.0f} |")
    return "\n".join(lines)


def cpu_table(phases: list[Phase]) -> str:
    """CPU seconds per process and phase; `others`: the rest of the machine (disturbance)."""
    columns = [*PROCESSES, "bench"]
    lines = [
        "| phase | wall s | " + " | ".join(columns) + " | others |",
        "|---|---:|" + "---:|" * (len(columns) + 1),
    ]
    for p in phases:
        seconds = [*(p.cpu.get(c, 0.0) for c in columns), p.others]
        cells = " | ".join(f"{value:.1f}" for value in seconds)
        lines.append(f"| {p.name} | {p.seconds:.1f} | {cells} |")
    return "\n".join(lines)


def disturbance(phases: list[Phase]) -> str | None:
    """Say so when other processes of the machine took a noticeable share of the run."""
    others = sum(p.others for p in phases)
    available = sum(p.seconds for p in phases) * (os.cpu_count() or 1)
    if others < DISTURBED_SHARE * available:
        return None
    return (
        f"DISTURBED: other processes used {others:.0f} of the {available:.0f} CPU seconds the "
        f"machine had during the phases ({others / available:.0%}); the figures are low"
    )


def section_body(report: Report, resources: Resources, *, quick: bool, wall: float) -> str:
    command = "make bench" + (' ARGS="--quick"' if quick else "")
    return "\n\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, Python "
            f"{platform.python_version()}; command: `{command}` (the whole run took "
            f"{wall / 60:.1f} min).",
            "`vigil up` as a user runs it (nats-server, SQLite store, five service processes, "
            "log level warning) with the load generator — asyncio httpx clients — on the same "
            "2 cores. Workflow `noop` (one `condition` step) for the Bench alerts of figures "
            "1-3; workflow `three` (`cli: true`, a `condition`, a `notify` to a log sink) for "
            "figures 4 and 5. Only 2xx answers count as accepted. ✗: misses the target. Phase "
            "3b repeats figure 3 with a minimal asyncio HTTP/1.1 client (see the notes), to "
            "show how much of it the httpx load generator costs.",
            figures_table(report.figures),
            "Resident memory (VmRSS), peak over samples every 0.5 s during the phases (`up`: "
            "the `vigil up` supervisor):",
            memory_table(resources),
            "CPU seconds spent by each process per phase (user + system, cli steps included in "
            "the executor's; 2 cores give 2 CPU seconds per wall second): where the time goes. "
            "`others`: the rest of the machine in the same time, i.e. how disturbed the run "
            "was.",
            cpu_table(report.phases),
            "Notes:\n\n" + "\n".join(f"- {n}" for n in report.notes),
        ]
    )


def write_section(body: str) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md, keeping others."""
    text = DOCUMENT.read_text() if DOCUMENT.exists() else "# Benchmarks\n"
    section = f"{SECTION}\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Vigil platform benchmark (DESIGN §9).")
    parser.add_argument("--quick", action="store_true", help="phases ~5x shorter (smoke run)")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir and log")
    options = parser.parse_args()
    scale = Scale().quick() if options.quick else Scale()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vigil-platform-bench-"))
    definitions, data_dir = work / "definitions", work / "data"
    definitions.mkdir()
    (definitions / "bench.yaml").write_text(DEFINITIONS)
    report = Report()
    print(f"starting vigil up (data in {data_dir})", flush=True)
    running = start_platform(
        definitions=definitions, data_dir=data_dir, env={"VIGIL_LOG_LEVEL": "warning"}
    )
    resources: Resources | None = None
    failure: str | None = None
    try:
        wait_until_up(running, report)
        resources = asyncio.run(measure(running, scale, report))
    except (PlatformExited, httpx.HTTPError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        code = running.stop()
        for line in log_summary(running.logs()):
            report.note(f"vigil-up.log: {line}")
        if code != 0:
            report.note(f"vigil up exited with {code}")
        if options.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - began
    if disturbed := disturbance(report.phases):
        report.note(disturbed)
    print(f"\n{cpu_table(report.phases)}\n\nwhole run: {wall:.0f} s")
    if resources is None:
        print(f"FAILED ({failure}); {DOCUMENT} is left as it was")
        sys.exit(1)
    write_section(section_body(report, resources, quick=options.quick, wall=wall))
    print(f"written to {DOCUMENT}")


if __name__ == "__main__":
    main()
