"""The platform benchmark's load generators, each a process of its own whose CPU seconds
are read from the kernel when it exits (`os.wait4`): `wrk` (compiled, with `load.lua`)
for the throughput phases, `bench.pacer` for the paced and burst phases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).with_name("load.lua")


class GeneratorFailed(RuntimeError):
    """A load generator could not run or did not say what it did."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    port: int
    path: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """What a generator did: requests answered 2xx, failures, its own CPU seconds."""

    requests: int
    alerts: int
    seconds: float
    cpu_seconds: float
    failures: dict[str, int] = field(default_factory=dict)
    sent_ns: dict[int, int] = field(default_factory=dict)  # seq → sent (pacer only)
    answered_ns: dict[int, int] = field(default_factory=dict)
    late_ms: dict[str, float] = field(default_factory=dict)  # p50/p99/max (paced only)
    priority: str = ""  # the pacer's scheduling priority

    def failed(self) -> str:
        return ", ".join(f"{n}x {what}" for what, n in self.failures.items() if n) or "none"


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def _run(argv: list[str]) -> tuple[str, float]:
    """Run `argv` to its end; its stdout and the CPU seconds it and its children used."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        msg = f"{Path(argv[0]).name} exited with {process.returncode}: {out.decode()[-2000:]}"
        raise GeneratorFailed(msg)
    return out.decode(), usage.ru_utime + usage.ru_stime


def wrk(
    target: Target, *, alertname: str, phase: str, size: int, connections: int, seconds: float
) -> Sent:
    """`connections` keep-alive connections of one wrk thread POST for `seconds`."""
    binary = wrk_binary()
    if binary is None:
        msg = "wrk is not installed (`make bench` installs Debian's package where apt can)"
        raise GeneratorFailed(msg)
    out, cpu = _run(
        [
            binary,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{target.port}{target.path}",
            "--",
            alertname,
            phase,
            str(size),
            target.token,
        ]
    )
    line = next((x for x in out.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        msg = f"wrk printed no result line: {out[-2000:]}"
        raise GeneratorFailed(msg)
    result = json.loads(line)
    failures = {k: int(result[k]) for k in ("connect", "read", "write", "timeout")}
    failures["HTTP >= 400"] = int(result["status"])
    answered = int(result["requests"]) - failures["HTTP >= 400"]
    return Sent(
        requests=answered,
        alerts=answered * size,
        seconds=result["duration_us"] / 1e6,
        cpu_seconds=cpu,
        failures=failures,
    )


def pacer(
    target: Target,
    *,
    alertname: str,
    phase: str,
    rate: float | None = None,
    seconds: float = 0.0,
    burst: int | None = None,
    payload: int = 1,
    concurrency: int = 4,
) -> Sent:
    """`bench.pacer` at `rate` requests/s for `seconds` (open loop), or `burst` alerts."""
    with tempfile.TemporaryDirectory(prefix="vigil-pacer-") as folder:
        out = Path(folder) / "sent.json"
        argv = [
            sys.executable,
            "-m",
            "bench.pacer",
            f"--port={target.port}",
            f"--path={target.path}",
            f"--token={target.token}",
            f"--alertname={alertname}",
            f"--phase={phase}",
            f"--payload={payload}",
            f"--concurrency={concurrency}",
            f"--out={out}",
        ]
        argv += [f"--rate={rate}", f"--seconds={seconds}"] if rate else [f"--burst={burst}"]
        _, cpu = _run(argv)
        result: dict[str, Any] = json.loads(out.read_text())
    sent = {int(seq): ns for seq, ns in result["sent_ns"].items()}
    answered = {int(seq): ns for seq, ns in result["answered_ns"].items()}
    span = (max(answered.values()) - min(sent.values())) / 1e9 if answered else 0.0
    return Sent(
        requests=int(result["requests"]),
        alerts=len(answered),
        seconds=span,
        cpu_seconds=cpu,
        failures=result["failures"],
        sent_ns=sent,
        answered_ns=answered,
        late_ms=result["late_ms"] if rate else {},
        priority=result["priority"],
    )
