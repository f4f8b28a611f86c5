"""Where the CPU goes: one phase of the platform benchmark with py-spy sampling every
service (`make profile ARGS="--rate 100 --seconds 20"`, `ARGS="--burst 2000"`, or
`ARGS="--noop 5000"` for the alerts-processed phase's one-condition workflow, or
`ARGS="--single 10"` for the single-alert requests phase: wrk, one alert per request).

Starts `vigil up` on the benchmark's workload (`bench.workload`), lets py-spy record each
service process (`--nonblocking`, so sampling does not stop the process it samples) while
`bench.pacer` sends the load, then prints per service its CPU-seconds and the functions
with most samples, inclusive and on their own (py-spy is a dev dependency; the raw stacks
stay in `--out` for a flame graph). A tool for finding the next cut, not a figure:
`make bench` measures.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.generators import Target, pacer, wrk
from bench.harness import (
    CLOCK_TICKS,
    DRAIN_TIMEOUT_SECONDS,
    active,
    drained,
    percentile,
    wait_until_up,
)
from bench.platform_bench import HOOK, executions_total, latencies_ms
from bench.workload import definitions, step_lines
from tests.support.definitions import write_definitions
from tests.support.platform import Platform, start_platform
from tests.support.process import free_port

SERVICES = ("ingest", "engine", "executor", "sink")
# Where a sample is a wait, not work (`--nonblocking` cannot tell an idle thread apart).
IDLE_FRAMES = (
    "EpollSelector.select (selectors.py",
    "_connection_worker_thread (aiosqlite/core.py:59)",  # aiosqlite 0.22's queue wait
    "_worker (concurrent/futures/thread.py:89)",
)
# Frames under every sample (the loop, the thread, the entry point): left out of "inclusive".
PLUMBING = ("asyncio/", "runpy", "threading.py", "runtime.py", "__main__.py")


def cpu_seconds(pid: int) -> float:
    """CPU-seconds of `pid` and of its children it has reaped (a cli step's process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def summary(collapsed: Path, top: int) -> str:
    """The functions with most samples in py-spy's raw (collapsed) output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # Waiting is not work: the idle event loop, idle worker threads.
        if frames[-1].startswith(IDLE_FRAMES):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if not any(part in frame for part in PLUMBING):
                inclusive[frame] += n
    lines = [f"  busy samples: {total}"]
    lines += ["  inclusive:"] + [
        f"    {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)
    ]
    lines += ["  own:"] + [
        f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--py-spy",
        default=shutil.which("py-spy", path=str(Path(sys.executable).parent)),
        help="the py-spy executable (default: the venv's; none: CPU per unit only)",
    )
    parser.add_argument("--no-py-spy", action="store_true", help="CPU per unit only")
    parser.add_argument("--rate", type=float, default=100.0, help="alerts/s (paced)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, help="a burst of this many 3-step executions")
    parser.add_argument(
        "--noop", type=int, help="a burst of this many one-condition executions (processed/s)"
    )
    parser.add_argument(
        "--single", type=float, help="seconds of wrk sending one alert per request (16 conns)"
    )
    parser.add_argument("--sink", default="log", choices=("log", "hook"))
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, help="keep the collapsed stacks here")
    parser.add_argument("--replicas", default="", help="e.g. engine=2,executor=2")
    options = parser.parse_args()
    if options.no_py_spy:
        options.py_spy = None
    work = Path(tempfile.mkdtemp(prefix="vigil-profile-"))
    out = options.out or work
    out.mkdir(parents=True, exist_ok=True)
    receiver_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(receiver_port)])
    (work / "steps").mkdir()
    write_definitions(work / "definitions", *definitions(work, receiver_port))
    extra = ["--replicas", options.replicas] if options.replicas else []
    running = start_platform(
        definitions=work / "definitions",
        data_dir=work / "data",
        extra_args=extra,
        env={"VIGIL_LOG_LEVEL": "warning"},
    )
    try:
        wait_until_up(running)
        profile(running, options, work, out)
    finally:
        running.stop()
        receiver.terminate()
        receiver.wait()
        shutil.rmtree(work / "data", ignore_errors=True)  # the store and the streams
        if options.py_spy:
            print(f"\nraw stacks (py-spy's collapsed format) in {out}")


def profile(running: Platform, options: argparse.Namespace, work: Path, out: Path) -> None:
    pids = running.children(*SERVICES)
    target = Target(port=running.http_port, path=HOOK, token="")
    label = "profile"
    # Warm up: imports, first compilations, connections.
    pacer(target, alertname="Stamp", phase="warm", rate=20, seconds=2)
    time.sleep(2)
    before = {pid: cpu_seconds(pid) for ids in pids.values() for pid in ids}
    spies = []
    for service, ids in pids.items():
        for pid in ids if options.py_spy else []:
            spies.append(
                (
                    service,
                    pid,
                    subprocess.Popen(
                        [
                            options.py_spy,
                            "record",
                            "--nonblocking",
                            "--format",
                            "raw",
                            "--rate",
                            "250",
                            "--pid",
                            str(pid),
                            "--output",
                            str(out / f"{service}-{pid}.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    ),
                )
            )
    time.sleep(1.0)
    started = time.monotonic()
    drains = options.noop or options.single
    if options.noop:
        since = sync_stats(running)
        sent = pacer(target, alertname="Bench", phase=label, burst=options.noop, payload=100)
        units = sent.alerts
        until_quiet(running, since, units, started)
    elif options.single:
        since = sync_stats(running)
        sent = wrk(
            target, alertname="Bench", phase=label, size=1, connections=16, seconds=options.single
        )
        units = sent.alerts
        print(f"wrk: {sent.requests / sent.seconds:.0f} requests/s, failures {sent.failures}")
        until_quiet(running, since, units, started)
    elif options.burst:
        alertname = "Three" if options.sink == "log" else "ThreeHook"
        sent = pacer(target, alertname=alertname, phase=label, burst=options.burst, payload=100)
        units = sent.alerts
    else:
        sent = pacer(
            target, alertname="Stamp", phase=label, rate=options.rate, seconds=options.seconds
        )
        units = len(sent.answered_ns)
    while (
        not drains
        and len(step_lines(work / "steps", label)) < units
        and time.monotonic() - started < 300
    ):
        time.sleep(0.1)
    time.sleep(1.0 if options.burst or drains else 0.2)
    wall = time.monotonic() - started
    for _, _, spy in spies:
        spy.send_signal(signal.SIGINT)
    for _, _, spy in spies:
        spy.wait(timeout=30)
    print(f"{units} units in {wall:.1f} s; generator {sent.cpu_seconds:.2f} CPU-s")
    if not (options.burst or drains) and units:
        latency = list(latencies_ms(sent, step_lines(work / "steps", label)).values())
        late = sent.late_ms
        print(
            f"sent → step running: p50 {percentile(latency, 0.5):.1f} ms, p99 "
            f"{percentile(latency, 0.99):.1f} ms, max {max(latency):.0f} ms; the sender was "
            f"late p99 {late['p99']:.1f} ms"
        )
    for service, pid in ((s, pid) for s, ids in pids.items() for pid in ids):
        used = cpu_seconds(pid) - before[pid]
        print(f"\n{service} ({pid}): {used:.2f} CPU-s, {1000 * used / max(units, 1):.2f} ms/unit")
        path = out / f"{service}-{pid}.txt"
        if path.exists():
            print(summary(path, options.top))


def sync_stats(running: Platform) -> dict[str, Any]:
    answer = running.api.get("/api/v1/stats")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def until_quiet(running: Platform, since: dict[str, Any], units: int, started: float) -> None:
    """Until the stats show `units` more executions, every alert recorded, none active."""
    while time.monotonic() - started < DRAIN_TIMEOUT_SECONDS:
        now = sync_stats(running)
        ran = executions_total(now) - executions_total(since)
        if ran >= units and drained(now) and active(now) == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"not every execution finished in {DRAIN_TIMEOUT_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
