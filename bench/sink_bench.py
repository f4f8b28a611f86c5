"""Sink benchmark: notify deliveries per second to a local webhook receiver (`make bench`).

What runs: a real nats-server, the controller (file mode, publishing two Sinks: `hook`, a
webhook to `bench.receiver` in a process of its own, and `log`) and the sink service, as
`vigil up` starts them, with a SQLite store. This process plays the engine: it publishes
`ROUND_STEPS` notify step requests to `vigil.steps.notify` as fast as JetStream takes
them, and times from the first publish until the sink has published every step's result
(the RESULTS stream, polled every 20 ms). Each round is one figure; a figure reported is
the median of `ROUNDS` rounds, with min and max.

Every notify step here delivers to one sink, as the 3-step workflow of `make bench` does:
deliveries per second above that figure's executions per second means the sink is not
what limits it. The receiver counts POSTs and distinct idempotency keys, so a lost or
repeated delivery shows. CPU seconds of every process per sink type say what a delivery
costs. Figures go to docs/benchmarks.md under "## Sink deliveries".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from nats.js import JetStreamContext

from bench.document import write_section
from bench.harness import machine_busy_seconds, read_cpu_seconds
from bench.platform_report import machine
from tests.support.nats import start_nats
from tests.support.process import free_port, spawn_logged
from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.bus import Outgoing
from vigil.common.messages import Alert, NotifyStep, StepRequest

SECTION = "## Sink deliveries"
NAMESPACE = "bench"
ROUNDS = 3
ROUND_STEPS = 2000
PUBLISH_CHUNK = 500
POLL_SECONDS = 0.02
ROUND_TIMEOUT_SECONDS = 300.0
READY_TIMEOUT_SECONDS = 60.0
SINK_TYPES = ("hook", "log")


def definitions(receiver_port: int) -> str:
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: hook, namespace: {NAMESPACE}}}
spec:
  type: webhook
  webhook: {{url: "http://127.0.0.1:{receiver_port}/notify"}}
---
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: log, namespace: {NAMESPACE}}}
spec: {{type: log}}
"""


def step_request(sink: str, round_number: int, index: int) -> StepRequest:
    execution = f"bench-{sink}-{round_number}-{index:06d}"
    return StepRequest(
        execution_id=execution,
        namespace=NAMESPACE,
        workflow="three",
        step="report",
        attempt=1,
        idempotency_key=f"{execution}/report/1",
        notify=NotifyStep(
            sinks=[sink],
            title="Bench is firing",
            message="a benchmark notification",
            alert=Alert(
                status="firing",
                fingerprint=f"{index:016x}",
                labels={"alertname": "Bench", "severity": "info", "instance": f"i-{index}"},
                annotations={"summary": "a benchmark notification"},
                starts_at=datetime.now(UTC),
            ),
        ),
    )


@dataclass(slots=True)
class Processes:
    """The processes whose CPU a round is charged with, by name."""

    pids: dict[str, int] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        seconds = {name: read_cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        usage = os.times()
        seconds["bench"] = usage.user + usage.system
        # The whole machine (every process, ours included): compared with the sum of the
        # columns before it, how disturbed the round was. Not a difference: per-process and
        # whole-machine counters are sampled differently and would make one a little off.
        seconds["machine"] = machine_busy_seconds()
        return seconds


@dataclass(frozen=True, slots=True)
class Round:
    sink: str
    number: int
    steps: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


async def results_stored(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.RESULTS_STREAM)
    return info.state.messages


async def run_round(
    bus: JetStreamBus, js: JetStreamContext, processes: Processes, sink: str, number: int
) -> Round:
    await js.purge_stream(subjects.RESULTS_STREAM)
    requests = [step_request(sink, number, i) for i in range(ROUND_STEPS)]
    before = processes.cpu()
    start = time.monotonic()
    for first in range(0, len(requests), PUBLISH_CHUNK):
        chunk = requests[first : first + PUBLISH_CHUNK]
        await bus.publish_all(
            [
                Outgoing(subject=subjects.steps("notify"), message=r, msg_id=r.idempotency_key)
                for r in chunk
            ]
        )
    while (done := await results_stored(js)) < ROUND_STEPS:
        if time.monotonic() - start > ROUND_TIMEOUT_SECONDS:
            msg = f"{sink} round {number}: {done} of {ROUND_STEPS} results after the timeout"
            raise RuntimeError(msg)
        await asyncio.sleep(POLL_SECONDS)
    seconds = time.monotonic() - start
    after = processes.cpu()
    return Round(
        sink=sink,
        number=number,
        steps=ROUND_STEPS,
        seconds=seconds,
        cpu={name: after[name] - before[name] for name in after},
    )


def wait_ready(url: str, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    msg = f"{what} not ready at {url} after {READY_TIMEOUT_SECONDS} s:\n{tail}"
    raise RuntimeError(msg)


@contextlib.contextmanager
def running(folder: Path) -> Iterator[tuple[str, int, Processes]]:
    """nats-server, the receiver, the controller and the sink; yields the NATS URL, the
    receiver's port and the processes to charge CPU to."""
    server = start_nats(folder / "nats")
    started = []
    try:
        receiver_port = free_port()
        receiver, receiver_log = spawn_logged(
            [sys.executable, "-m", "bench.receiver", str(receiver_port)], folder / "receiver.log"
        )
        started.append((receiver, receiver_log))
        wait_ready(f"http://127.0.0.1:{receiver_port}/stats", "receiver", folder / "receiver.log")
        defs = folder / "definitions"
        defs.mkdir()
        (defs / "sinks.yaml").write_text(definitions(receiver_port))
        common = {
            "VIGIL_NATS_URL": server.url,
            "VIGIL_STORE_URL": f"sqlite:///{folder / 'vigil.db'}",
            "VIGIL_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
        pids = {"receiver": receiver.pid, "nats": server.process.pid}
        for name in ("controller", "sink"):
            ops = free_port()
            env = {**common, f"VIGIL_{name.upper()}_OPS_PORT": str(ops)}
            env["VIGIL_CONTROLLER_DEFINITIONS" if name == "controller" else "VIGIL_DEFINITIONS"] = (
                str(defs)
            )
            log_path = folder / f"{name}.log"
            process, log_file = spawn_logged(
                [sys.executable, "-m", f"vigil.{name}"], log_path, env=env
            )
            started.append((process, log_file))
            wait_ready(f"http://127.0.0.1:{ops}/readyz", name, log_path)
            pids[name] = process.pid
        yield server.url, receiver_port, Processes(pids)
    finally:
        for process, log_file in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log_file.close()
        server.stop()


def summary(rounds: list[Round], sink: str) -> tuple[float, float, float, float]:
    """Median, min and max deliveries/s, and the sink's CPU ms per delivery (median)."""
    mine = [r for r in rounds if r.sink == sink]
    rates = [r.rate for r in mine]
    cpu_ms = statistics.median(1000 * r.cpu["sink"] / r.steps for r in mine)
    return statistics.median(rates), min(rates), max(rates), cpu_ms


def section_body(rounds: list[Round], received: dict[str, int], wall: float) -> str:
    today = datetime.now(UTC).date().isoformat()
    lines = [
        f"Measured {today} on {machine()}; command: `make bench` (this part took {wall:.0f} s).",
        "",
        "The sink service alone (with nats-server, the controller in file mode and a SQLite "
        "store), fed notify step requests by the benchmark as fast as JetStream takes them: "
        f"{ROUNDS} rounds of {ROUND_STEPS:,} steps per sink type, each step one delivery, timed "
        "from the first publish to the last step result. The webhook receiver is "
        "`bench/receiver.py`, a minimal HTTP/1.1 server in its own process. "
        "One delivery per step as in the 3-step workflow of the platform figures: deliveries "
        "per second above that figure's executions per second means the sink is not the "
        "bottleneck.",
        "",
        "| sink | deliveries per second, median (min-max) | sink CPU ms per delivery |",
        "|---|---|---:|",
    ]
    for sink, label in (("hook", "webhook to a local receiver"), ("log", "log")):
        median, low, high, cpu_ms = summary(rounds, sink)
        lines.append(f"| {label} | {median:,.0f}/s ({low:,.0f}-{high:,.0f}) | {cpu_ms:.2f} |")
    names = list(rounds[0].cpu)
    lines += [
        "",
        "CPU seconds per round (user + system; 2 cores give 2 CPU seconds per wall second; "
        "`machine`: every process of the machine, these included: well above their sum means "
        "a disturbed round):",
        "",
        "| round | wall s | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for r in rounds:
        cells = " | ".join(f"{r.cpu[n]:.1f}" for n in names)
        lines.append(f"| {r.sink} {r.number} | {r.seconds:.1f} | {cells} |")
    sent = sum(r.steps for r in rounds if r.sink == "hook")
    lines += [
        "",
        f"The receiver got {received['posts']:,} POSTs with {received['keys']:,} distinct "
        f"idempotency keys for {sent:,} webhook deliveries, over {received['connections']:,} "
        "connections (the stats request's included).",
    ]
    return "\n".join(lines)


async def measure(url: str, processes: Processes) -> list[Round]:
    bus = await JetStreamBus.connect(url, name="sink-bench")
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        rounds = []
        for sink in SINK_TYPES:
            for number in range(1, ROUNDS + 1):
                done = await run_round(bus, js, processes, sink, number)
                print(
                    f"{sink} round {number}: {done.rate:,.0f} deliveries/s "
                    f"({done.steps:,} in {done.seconds:.2f} s; sink CPU {done.cpu['sink']:.1f} s)",
                    flush=True,
                )
                rounds.append(done)
        return rounds
    finally:
        await client.close()
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="vigil-sink-bench-") as tmp,
        running(Path(tmp)) as (url, receiver_port, processes),
    ):
        rounds = asyncio.run(measure(url, processes))
        received = json.loads(httpx.get(f"http://127.0.0.1:{receiver_port}/stats", timeout=5).text)
    body = section_body(rounds, received, time.monotonic() - began)
    print(f"\n{SECTION}\n\n{body}")
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
