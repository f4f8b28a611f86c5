"""The platform benchmark's harness: what it sends and how, how it watches the
platform (stats API, CPU and memory per process), and where its figures go."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.definitions import alertmanager_body, alertmanager_source, log_sink
from tests.support.platform import Platform

SECTION = "## Embedded platform"
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

WORKFLOWS = """\
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
DEFINITIONS = (alertmanager_source("bench"), log_sink("bench", "log"), WORKFLOWS)


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
        document = alertmanager_body(
            alerts,
            receiver="vigil",
            groupKey=f"{{}}:{{phase={self.phase!r}}}",
            groupLabels={"phase": self.phase},
        )
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
