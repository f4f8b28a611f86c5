"""The platform benchmark's harness: how it watches the platform (stats API, executions,
CPU and memory per process) and times its phases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.platform import Platform

PROCESSES = ("ingest", "engine", "executor", "sink", "controller", "nats", "up")
MB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT_SECONDS = 30.0
DRAIN_TIMEOUT_SECONDS = 600.0  # 10 minutes, then report what was reached
POLL_SECONDS = 0.1
SAMPLE_SECONDS = 0.5
UP_TIMEOUT_SECONDS = 90.0
UP_EVENT = re.compile(r"\]\s+vigil_up\s")

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
    api: httpx.AsyncClient,
    running: Platform,
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
            snapshot = await stats(api)
        except httpx.HTTPError:
            errors += 1
            check_running(running)
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
    """Resident memory (peak over samples, last) and CPU seconds of every child process of
    `vigil up`, summed over a service's replicas (and over a process the supervisor
    restarted: the CPU a dead process had used is kept)."""

    platform: Platform
    seen: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid → (name, cpu)
    first: dict[str, set[int]] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    last_mb: dict[str, float] = field(default_factory=dict)
    sampling: bool = False

    def pids(self) -> dict[str, list[int]]:
        """Every process of every service, the supervisor (`up`) included: one /proc scan."""
        found = self.platform.children(*(name for name in PROCESSES if name != "up"))
        found["up"] = [self.platform.process.pid]
        for name, pids in found.items():
            self.first.setdefault(name, set(pids))
        return found

    @property
    def restarts(self) -> dict[str, int]:
        started: Counter[str] = Counter(name for name, _ in self.seen.values())
        return {
            name: n - len(self.first.get(name, ()))
            for name, n in started.items()
            if n > len(self.first.get(name, ()))
        }

    def sample(self) -> None:
        for name, pids in self.pids().items():
            rss = [mb for pid in pids if (mb := read_rss_mb(pid)) is not None]
            if rss:
                self.last_mb[name] = max(rss)
                if self.sampling:
                    self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), *rss)

    def cpu(self) -> dict[str, float]:
        """Cumulative CPU seconds per service (all its processes), and the machine's."""
        for name, pids in self.pids().items():
            for pid in pids:
                seconds = read_cpu_seconds(pid)
                if seconds is not None:
                    self.seen[pid] = (name, seconds)
        result = dict.fromkeys(PROCESSES, 0.0)
        for name, seconds in self.seen.values():
            result[name] += seconds
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
    cpu: dict[str, float]  # per process, "generator", and "machine" (all cores, busy)
    units: int = 0  # alerts or executions the phase handled, for CPU per unit


@contextlib.asynccontextmanager
async def phase(
    resources: Resources, phases: list[Phase], name: str
) -> AsyncIterator[dict[str, float]]:
    """Record the wall time and the CPU seconds each process spent in the block; the block
    adds its generator's CPU seconds (`extra["generator"]`) and units (`extra["units"]`)."""
    started, before = time.monotonic(), resources.cpu()
    extra: dict[str, float] = {}
    resources.sampling = True
    try:
        yield extra
    finally:
        resources.sampling = False
        after = resources.cpu()
        cpu = {process: after[process] - before.get(process, 0.0) for process in after}
        cpu["generator"] = extra.get("generator", 0.0)
        phases.append(
            Phase(
                name=name,
                seconds=time.monotonic() - started,
                cpu=cpu,
                units=int(extra.get("units", 0)),
            )
        )


class PlatformExited(RuntimeError):
    """`vigil up` stopped during the run: the figures would mean nothing."""


def check_running(running: Platform) -> None:
    code = running.process.poll()
    if code is not None:
        msg = f"vigil up exited with {code} during the run"
        raise PlatformExited(msg)


def wait_until_up(running: Platform) -> None:
    """`start_platform` returns once ingest answers; wait for `vigil up` to report every
    service ready (its `vigil_up` line), so a service that fails to start is seen now."""
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    while not UP_EVENT.search(running.logs()):
        if running.process.poll() is not None:
            msg = f"vigil up exited with {running.process.returncode} while starting"
            raise PlatformExited(msg)
        if time.monotonic() > deadline:
            msg = f"vigil up did not log `vigil_up` within {UP_TIMEOUT_SECONDS:.0f} s"
            raise PlatformExited(msg)
        time.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]
