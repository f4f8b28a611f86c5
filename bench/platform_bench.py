"""Platform benchmark: the DESIGN §9 figures, measured against `vigil up` (`make bench`).

Starts the embedded platform (nats-server, SQLite, the five services) on free ports, once
with one process per service and once with `--replicas engine=2,executor=2`, and measures
in each of `--rounds` rounds (default 3; every figure is the median with min and max):

1. alerts accepted per second: Alertmanager bodies of 100 alerts from `wrk` (8 keep-alive
   connections, 10 s), and alerts processed per second: from the first POST until the
   engine recorded every alert the ALERTS stream received and ran its execution;
2. single-alert webhook requests per second (`wrk`, 16 connections, 10 s);
3. latency at a steady 100 alerts/s for 10 s (open loop, `bench.pacer`): from the moment a
   request was sent to the moment the first step's process runs, stamped by the step
   itself (`$EPOCHREALTIME` of bash; the sender's clock is `time.time_ns()`, the same one);
4. the same at 300 alerts/s for 60 s, with the p99 of each 10 s window: a queue that grows
   shows as a rising p99;
5. executions of a 3-step workflow (a `cli` step, a `condition`, a `notify`) completed
   per second after a burst of 2,000 alerts, with a log sink and with a webhook sink to
   `bench.receiver` in a process of its own.

The load generators are processes of their own (`wrk` is compiled; `bench.pacer` imports
the standard library only); their CPU seconds are read from the kernel and shown beside
the services'. A paced phase whose generator sent requests later than its schedule (p99
over 10 ms) is refused, not reported. Every phase checks that nothing was lost or done
twice: an execution per alert, every step's process exactly once (each writes a line), a
webhook per execution with its own idempotency key. The figures go to `docs/benchmarks.md`
under "## Embedded platform"; other sections are kept. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.document import write_section
from bench.generators import GeneratorFailed, Sent, Target, pacer, wrk, wrk_binary
from bench.harness import (
    POLL_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    Drain,
    PlatformExited,
    Resources,
    check_running,
    epoch,
    executions,
    percentile,
    phase,
    stats,
    until_drained,
    wait_until_up,
)
from bench.platform_report import (
    Run,
    cpu_table,
    figures_table,
    log_summary,
    machine,
    memory_table,
)
from bench.workload import definitions, step_lines
from tests.support.definitions import write_definitions
from tests.support.platform import Platform, start_platform
from tests.support.process import free_port

SECTION = "## Embedded platform"
HOOK = "/hooks/bench/am"
LATE_P99_MS = 10.0  # a paced generator later than this at p99 fell behind its schedule
STAMP_TIMEOUT_SECONDS = 180.0
REPLICAS = "engine=2,executor=2"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    rounds: int = 3
    accept_seconds: float = 10.0
    single_seconds: float = 10.0
    latency_rate: float = 100.0
    latency_seconds: float = 10.0
    storm_rate: float = 300.0
    storm_seconds: float = 60.0
    window_seconds: float = 10.0
    burst_alerts: int = 2000

    def quick(self) -> Scale:
        return replace(
            self,
            rounds=1,
            accept_seconds=2.0,
            single_seconds=2.0,
            latency_seconds=4.0,
            storm_seconds=12.0,
            window_seconds=4.0,
            burst_alerts=400,
        )


@dataclass(slots=True, kw_only=True)
class Bench:
    running: Platform
    api: httpx.AsyncClient
    scale: Scale
    run: Run
    resources: Resources
    steps: Path  # where each step's process writes its line
    receiver: str  # the webhook receiver's stats URL

    @property
    def target(self) -> Target:
        return Target(port=self.running.http_port, path=HOOK, token="")


async def until_steps_ran(bench: Bench, label: str, expected: set[int]) -> dict[int, list[str]]:
    deadline = time.monotonic() + STAMP_TIMEOUT_SECONDS
    while True:
        found = step_lines(bench.steps, label)
        if expected <= found.keys() or time.monotonic() > deadline:
            return found
        check_running(bench.running)
        await asyncio.sleep(POLL_SECONDS)


def check_steps(bench: Bench, label: str, sent: Sent, lines: dict[int, list[str]]) -> None:
    """Every accepted alert's step ran exactly once, and no other step ran."""
    accepted = set(sent.answered_ns)
    lost = accepted - lines.keys()
    twice = {seq for seq, found in lines.items() if len(found) > 1}
    unknown = lines.keys() - set(sent.sent_ns)
    if lost or twice or unknown:
        bench.run.problem(
            f"{label}: {len(lost)} accepted alerts without their step, {len(twice)} steps ran "
            f"more than once, {len(unknown)} steps of alerts never sent"
        )


async def settle(bench: Bench) -> None:
    """Wait until the platform is quiet: every alert recorded, no execution running."""
    drain = await until_drained(
        bench.api, bench.running, start=time.monotonic(), since=await stats(bench.api), quiet=True
    )
    if not drain.complete:
        bench.run.problem(f"the platform did not settle: {drain.last}")


def executions_total(snapshot: dict[str, Any]) -> int:
    return sum(int(n) for n in snapshot["executions"].values())


# --- the phases ------------------------------------------------------------------------------


async def wrk_then_drain(
    bench: Bench, *, label: str, name: str, size: int, connections: int, seconds: float
) -> tuple[Sent, Drain]:
    """wrk POSTs bodies of `size` alerts for `seconds`; then wait until the engine recorded
    every alert and ran its execution. Nothing lost, nothing run twice, or a problem."""
    since = await stats(bench.api)
    async with phase(bench.resources, bench.run.phases, name) as extra:
        start = time.monotonic()
        sent = await asyncio.to_thread(
            wrk,
            bench.target,
            alertname="Bench",
            phase=label,
            size=size,
            connections=connections,
            seconds=seconds,
        )
        drain = await until_drained(bench.api, bench.running, start=start, since=since, quiet=True)
        extra["generator"], extra["units"] = sent.cpu_seconds, drain.recorded
    ran = executions_total(await stats(bench.api)) - executions_total(since)
    if drain.recorded < sent.alerts or ran != drain.recorded:
        bench.run.problem(
            f"{label}: {sent.alerts:,} alerts accepted, {drain.recorded:,} recorded, "
            f"{ran:,} executions"
        )
    bench.run.note(
        f"{label}: wrk used {sent.cpu_seconds:.2f} CPU-s in {sent.seconds:.1f} s "
        f"({1e6 * sent.cpu_seconds / max(sent.requests, 1):.0f} µs per request); all recorded "
        f"and run {drain.seconds:.1f} s after the first; failures: {sent.failed()}"
    )
    return sent, drain


async def accepted_and_processed(bench: Bench, round_number: int) -> None:
    """Bodies of 100 alerts for ~10 s; then until the engine recorded all of them."""
    sent, drain = await wrk_then_drain(
        bench,
        label=f"accept-{round_number}",
        name="accept + process, 100 per body",
        size=100,
        connections=8,
        seconds=bench.scale.accept_seconds,
    )
    bench.run.figure(
        "accepted",
        name="alerts accepted per second (bodies of 100)",
        unit="/s",
        target="≥ 10,000/s",
        threshold=10_000,
        peers="Keep 0.54: 5,820/s",
    ).add(sent.alerts / sent.seconds)
    processed = bench.run.figure(
        "processed",
        name="alerts processed per second (recorded, matched, executed)",
        unit="/s",
        target="≥ 5,000/s",
        threshold=5_000,
        peers="Keep: 36.6/s",
    )
    if drain.complete:
        processed.add(drain.recorded / drain.seconds)
    else:
        processed.refuse(f"not every alert was recorded within the time limit: {drain.last}")


async def single_alert_requests(bench: Bench, round_number: int) -> None:
    sent, _ = await wrk_then_drain(
        bench,
        label=f"single-{round_number}",
        name="single-alert requests",
        size=1,
        connections=16,
        seconds=bench.scale.single_seconds,
    )
    bench.run.figure(
        "single",
        name="single-alert webhook requests per second",
        unit="/s",
        target="≥ 2,000/s",
        threshold=2_000,
        peers="Keep: 51-67/s",
    ).add(sent.requests / sent.seconds)


def latencies_ms(sent: Sent, lines: dict[int, list[str]]) -> dict[int, float]:
    """Sent → the step's own stamp, per seq; a negative one is the benchmark's bug."""
    result = {}
    for seq, found in lines.items():
        if seq in sent.sent_ns:
            latency = float(found[0]) * 1000 - sent.sent_ns[seq] / 1e6
            if latency < 0:
                msg = f"seq {seq}: the step ran {-latency:.1f} ms before its request was sent"
                raise AssertionError(msg)
            result[seq] = latency
    return result


async def paced(bench: Bench, round_number: int, *, rate: float, seconds: float) -> None:
    """Alerts of `stamp` at `rate`/s, open loop; sent → first step's process running."""
    label = f"paced{rate:g}-{round_number}"
    async with phase(
        bench.resources, bench.run.phases, f"{rate:g} alerts/s, sent → step running"
    ) as extra:
        sent = await asyncio.to_thread(
            pacer, bench.target, alertname="Stamp", phase=label, rate=rate, seconds=seconds
        )
        lines = await until_steps_ran(bench, label, set(sent.answered_ns))
        extra["generator"], extra["units"] = sent.cpu_seconds, len(lines)
    check_steps(bench, label, sent, lines)
    targeted = rate <= 100
    p50 = bench.run.figure(
        f"p50-{rate:g}",
        name=f"sent → first step running at {rate:g} alerts/s, p50",
        unit="ms",
        target="≤ 20 ms" if targeted else "—",
        threshold=20 if targeted else None,
        better="lower",
        peers="Keep: alert visible after ~70-90 ms p50",
    )
    p99 = bench.run.figure(
        f"p99-{rate:g}",
        name=f"sent → first step running at {rate:g} alerts/s, p99",
        unit="ms",
        target="≤ 100 ms" if targeted else "flat (next row)",
        threshold=100 if targeted else None,
        better="lower",
    )
    late = sent.late_ms
    if late["p99"] > LATE_P99_MS:
        why = (
            f"the sender was p99 {late['p99']:.0f} ms late (max {late['max']:.0f} ms, "
            f"{sent.priority})"
        )
        p50.refuse(why)
        p99.refuse(why)
        return
    latency = latencies_ms(sent, lines)
    if not latency:
        p50.refuse("no step ran")
        p99.refuse("no step ran")
        return
    p50.add(percentile(list(latency.values()), 0.5))
    p99.add(percentile(list(latency.values()), 0.99))
    bench.run.note(
        f"{label}: {len(latency):,} steps ran of {len(sent.answered_ns):,} accepted; max "
        f"{max(latency.values()):.0f} ms; the pacer was late p50 {late['p50']:.2f} ms, p99 "
        f"{late['p99']:.2f} ms ({sent.priority}) and used {sent.cpu_seconds:.1f} CPU-s; failures: "
        f"{sent.failed()}"
    )
    if seconds >= 3 * bench.scale.window_seconds:
        windows = window_p99(sent, latency, bench.scale.window_seconds)
        growth = bench.run.figure(
            f"growth-{rate:g}",
            name=f"p99 of the last {bench.scale.window_seconds:g} s ÷ the first, {rate:g}/s",
            unit="x",
            digits=1,
            target="≤ 2 (no queue growth)",
            better="lower",
            threshold=2.0,
        )
        growth.add(windows[-1] / windows[0])
        bench.run.note(
            f"{label}: p99 per {bench.scale.window_seconds:g} s window: "
            + ", ".join(f"{w:.0f}" for w in windows)
            + " ms"
        )


def window_p99(sent: Sent, latency: dict[int, float], window: float) -> list[float]:
    first = min(sent.sent_ns.values())
    groups: dict[int, list[float]] = {}
    for seq, value in latency.items():
        groups.setdefault(int((sent.sent_ns[seq] - first) / 1e9 // window), []).append(value)
    return [percentile(groups[k], 0.99) for k in sorted(groups) if len(groups[k]) > 1]


async def burst(bench: Bench, round_number: int, *, sink: str) -> None:
    """2,000 alerts of the 3-step workflow at once; executions completed per second."""
    workflow, alertname = ("three", "Three") if sink == "log" else ("three-hook", "ThreeHook")
    label = f"burst-{sink}-{round_number}"
    await settle(bench)
    received = (await bench.api.get(bench.receiver)).json()
    async with phase(
        bench.resources, bench.run.phases, f"burst, 3-step executions, {sink} sink"
    ) as extra:
        sent = await asyncio.to_thread(
            pacer,
            bench.target,
            alertname=alertname,
            phase=label,
            burst=bench.scale.burst_alerts,
            payload=100,
            concurrency=4,
        )
        await settle(bench)
        extra["generator"], extra["units"] = sent.cpu_seconds, sent.alerts
    finished = await executions(bench.api, workflow=workflow, phase=label)
    states = Counter(e["state"] for e in finished)
    succeeded = [e for e in finished if e["state"] == "succeeded"]
    first = min(sent.sent_ns.values()) / 1e9
    last = max((epoch(e["finishedAt"]) or 0.0 for e in succeeded), default=first)
    figure = bench.run.figure(
        f"executions-{sink}",
        name=f"3-step executions completed per second, {sink} sink",
        unit="/s",
        target="≥ 500/s" if sink == "log" else "≥ 400/s",
        threshold=500 if sink == "log" else 400,
        peers="Argo ~35/s tuned; StackStorm ~13/s",
    )
    if succeeded and last > first:
        figure.add(len(succeeded) / (last - first))
    else:
        figure.refuse(f"no execution succeeded: {dict(states)}")
    check_steps(bench, label, sent, step_lines(bench.steps, label))
    if len(finished) != sent.alerts or states["succeeded"] != sent.alerts:
        bench.run.problem(f"{label}: {sent.alerts:,} alerts accepted; executions {dict(states)}")
    if sink == "hook":
        now = (await bench.api.get(bench.receiver)).json()
        posts, keys = now["posts"] - received["posts"], now["keys"] - received["keys"]
        if posts != sent.alerts or keys != sent.alerts:
            bench.run.problem(
                f"{label}: {sent.alerts:,} executions, {posts:,} webhooks, "
                f"{keys:,} distinct idempotency keys"
            )
    bench.run.note(
        f"{label}: {len(succeeded):,} succeeded in {last - first:.1f} s; the pacer used "
        f"{sent.cpu_seconds:.1f} CPU-s; failures: {sent.failed()}"
    )


async def measure(bench: Bench, *, replicated: bool) -> None:
    """Every phase, `rounds` times; fewer phases when the services are replicated."""
    scale = bench.scale
    for round_number in range(1, scale.rounds + 1):
        print(f"{bench.run.label}: round {round_number} of {scale.rounds}", flush=True)
        if not replicated:
            if wrk_binary() is None:
                bench.run.note("wrk is not installed: no accepted/processed/single figures")
            else:
                await accepted_and_processed(bench, round_number)
                await single_alert_requests(bench, round_number)
        await settle(bench)
        await paced(bench, round_number, rate=scale.latency_rate, seconds=scale.latency_seconds)
        if not replicated:
            await settle(bench)
            await paced(bench, round_number, rate=scale.storm_rate, seconds=scale.storm_seconds)
        await burst(bench, round_number, sink="log")
        await burst(bench, round_number, sink="hook")
        check_running(bench.running)


async def measured(
    running: Platform, run: Run, scale: Scale, steps: Path, receiver: str, *, replicated: bool
) -> None:
    resources = Resources(running)
    resources.sample()
    sampler = asyncio.create_task(resources.run())
    try:
        async with httpx.AsyncClient(
            base_url=running.url, headers=running.headers, timeout=REQUEST_TIMEOUT_SECONDS
        ) as api:
            bench = Bench(
                running=running,
                api=api,
                scale=scale,
                run=run,
                resources=resources,
                steps=steps,
                receiver=receiver,
            )
            await measure(bench, replicated=replicated)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    run.peak_mb = dict(resources.peak_mb)
    if resources.restarts:
        run.problem(f"RESTARTED during the run: {resources.restarts}")
    peak = max(
        (mb for name, mb in resources.peak_mb.items() if name not in ("nats", "up")), default=0.0
    )
    run.figure(
        "memory",
        name="resident memory of a service process (largest peak)",
        unit="MB",
        target="≤ 150 MB",
        better="lower",
        threshold=150,
        peers="Keep: 475 MiB, one process",
    ).add(peak)


def one_configuration(
    work: Path, label: str, extra_args: list[str], scale: Scale, receiver_port: int
) -> Run:
    run = Run(label=label)
    folder = work / label.replace(" ", "-").replace(",", "").replace("=", "")
    steps = folder / "steps"
    steps.mkdir(parents=True)
    write_definitions(folder / "definitions", *definitions(folder, receiver_port))
    print(f"{label}: starting vigil up (data in {folder / 'data'})", flush=True)
    running = start_platform(
        definitions=folder / "definitions",
        data_dir=folder / "data",
        extra_args=extra_args,
        env={"VIGIL_LOG_LEVEL": "warning"},
    )
    try:
        wait_until_up(running)
        asyncio.run(
            measured(
                running,
                run,
                scale,
                steps,
                f"http://127.0.0.1:{receiver_port}/stats",
                replicated=bool(extra_args),
            )
        )
    except (PlatformExited, GeneratorFailed, httpx.HTTPError) as exc:
        run.problem(f"the run stopped: {type(exc).__name__}: {exc}")
    finally:
        code = running.stop()
        for line in log_summary(running.logs()):
            run.note(f"vigil-up.log: {line}")
        if code != 0:
            run.problem(f"vigil up exited with {code}")
    return run


def section_body(runs: list[Run], scale: Scale, *, command: str, wall: float) -> str:
    parts = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, Python "
        f"{sys.version.split()[0]}; command: `{command}` (the whole run took {wall / 60:.1f} min). "
        f"Every figure is the median of {scale.rounds} rounds, with min-max; ✗ misses the "
        "target.",
        "`vigil up` as a user runs it (nats-server, SQLite, log level warning), once with one "
        f"process per service and once with `--replicas {REPLICAS}`. The load comes from "
        "processes of their own: `wrk` (Debian's package, one thread, `bench/load.lua`) for "
        "the accepted and single-request figures; `bench/pacer.py` (standard library only) "
        "for the paced phases, open loop — a phase whose sender fell behind its schedule "
        f"(p99 over {LATE_P99_MS:g} ms late) is refused — and for the bursts. Latency is from "
        "the moment a request was sent to the moment the first step's process runs, stamped "
        "by that process (`$EPOCHREALTIME`). The 3-step workflow: `cli` (`sh -c 'echo … >> "
        "file'`, so every run is counted), `condition`, `notify` (log, or webhook to "
        "`bench/receiver.py` in a process of its own).",
        figures_table(runs),
    ]
    for run in runs:
        verdict = (
            "nothing lost or duplicated in any phase"
            if not run.problems
            else "PROBLEMS: " + "; ".join(run.problems)
        )
        parts += [
            f"### {run.label}",
            f"Correctness: {verdict}.",
            "CPU milliseconds per alert (or execution) by process, median of the rounds "
            "(`generator`: the load generator; `machine`: every core's busy time, whoever "
            "used it; cli steps count in the executor's):",
            cpu_table(run),
            "Notes:\n\n" + "\n".join(f"- {n}" for n in run.notes),
        ]
    parts += ["Resident memory (VmRSS, the largest process of a service):", memory_table(runs)]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="Vigil platform benchmark (DESIGN §9).")
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds per configuration (default 3)")
    parser.add_argument("--no-replicas", action="store_true", help="one configuration only")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md")
    parser.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    options = parser.parse_args()
    scale = Scale().quick() if options.quick else Scale()
    if options.rounds:
        scale = replace(scale, rounds=options.rounds)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vigil-platform-bench-"))
    receiver_port = free_port()
    receiver = start_receiver(receiver_port)
    runs = []
    try:
        configurations: list[tuple[str, list[str]]] = [("one process each", [])]
        if not options.no_replicas:
            configurations.append((REPLICAS.replace(",", ", "), ["--replicas", REPLICAS]))
        for label, extra in configurations:
            runs.append(one_configuration(work, label, extra, scale, receiver_port))
    finally:
        receiver.terminate()
        receiver.wait()
    command = "make bench" + (' ARGS="--quick"' if options.quick else "")
    body = section_body(runs, scale, command=command, wall=time.monotonic() - began)
    print("\n" + body)
    (work / "benchmarks.md").write_text(body + "\n")
    if not options.no_write and not options.quick:
        write_section(SECTION, body)
    if options.keep_data:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", str(port)], stdin=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1).raise_for_status()
            return process
        time.sleep(0.1)
    process.kill()
    msg = "the webhook receiver did not answer within 20 s"
    raise RuntimeError(msg)


if __name__ == "__main__":
    main()
