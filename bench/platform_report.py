"""The platform benchmark's figures and how they are written: each figure is measured in
every round and shown as the median with min and max; `docs/benchmarks.md` gets a section
with the figures of one and of several replicas side by side."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import PROCESSES, Phase

CPU_COLUMNS = ("ingest", "engine", "executor", "sink", "controller", "nats", "generator")


@dataclass(slots=True, kw_only=True)
class Figure:
    """One figure over the rounds: a value per round, or why a round could not count."""

    name: str
    unit: str
    target: str
    peers: str = ""
    better: str = "higher"  # or "lower": which way meets the target
    threshold: float | None = None
    digits: int = 0
    values: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)
        print(f"  {self.name}: {value:,.1f} {self.unit}", flush=True)

    def refuse(self, why: str) -> None:
        self.refused.append(why)
        print(f"  {self.name}: REFUSED — {why}", flush=True)

    def summary(self) -> str:
        if not self.values:
            if not self.refused:
                return "not measured"
            return f"refused in {len(self.refused)} of {len(self.refused)} rounds: " + "; ".join(
                dict.fromkeys(self.refused)
            )
        middle, d = statistics.median(self.values), self.digits
        text = f"{middle:,.{d}f} {self.unit}"
        if len(self.values) > 1:
            text += f" ({min(self.values):,.{d}f} to {max(self.values):,.{d}f})"
        if self.refused:
            text += f"; refused in {len(self.refused)} rounds: " + "; ".join(self.refused)
        return text

    @property
    def met(self) -> bool | None:
        if not self.values or self.threshold is None:
            return None
        middle = statistics.median(self.values)
        return middle >= self.threshold if self.better == "higher" else middle <= self.threshold


@dataclass(slots=True)
class Run:
    """One platform configuration's figures, phases and notes over every round."""

    label: str
    figures: dict[str, Figure] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    peak_mb: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # lost, duplicated, failed

    def figure(
        self,
        key: str,
        *,
        name: str,
        unit: str,
        target: str,
        threshold: float | None = None,
        better: str = "higher",
        peers: str = "",
        digits: int = 0,
    ) -> Figure:
        if key not in self.figures:
            self.figures[key] = Figure(
                name=name,
                unit=unit,
                target=target,
                threshold=threshold,
                better=better,
                peers=peers,
                digits=digits,
            )
        return self.figures[key]

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"  PROBLEM: {text}", flush=True)


def machine() -> str:
    processor = platform.processor()
    if not processor:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    processor = line.split(":", 1)[1].strip()
                    break
    return f"{processor or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def figures_table(runs: list[Run]) -> str:
    """One row per figure, one column per run (replicas), then the target."""
    keys = list(dict.fromkeys(k for run in runs for k in run.figures))
    head = "| figure | " + " | ".join(run.label for run in runs) + " | target | peers |"
    lines = [head, "|---|" + "---|" * (len(runs) + 2)]
    for key in keys:
        first = next(run.figures[key] for run in runs if key in run.figures)
        cells = []
        for run in runs:
            figure = run.figures.get(key)
            if figure is None:
                cells.append("—")
                continue
            mark = " ✗" if figure.met is False else ""
            cells.append(figure.summary() + mark)
        lines.append(
            f"| {first.name} | " + " | ".join(cells) + f" | {first.target} | {first.peers} |"
        )
    return "\n".join(lines)


def cpu_table(run: Run) -> str:
    """CPU milliseconds per alert (or execution) by process, median over the rounds."""
    by_name: dict[str, list[Phase]] = {}
    for p in run.phases:
        if p.units:
            by_name.setdefault(p.name, []).append(p)
    lines = [
        "| phase | per | " + " | ".join(CPU_COLUMNS) + " | all processes | machine |",
        "|---|---|" + "---:|" * (len(CPU_COLUMNS) + 2),
    ]
    for name, phases in by_name.items():
        unit = "execution" if "execution" in name else "alert"
        cells = []
        for column in CPU_COLUMNS:
            cells.append(statistics.median(1000 * p.cpu.get(column, 0.0) / p.units for p in phases))
        ours = statistics.median(
            1000 * sum(p.cpu.get(c, 0.0) for c in (*PROCESSES, "generator")) / p.units
            for p in phases
        )
        whole = statistics.median(1000 * p.cpu.get("machine", 0.0) / p.units for p in phases)
        lines.append(
            f"| {name} | {unit} | "
            + " | ".join(f"{c:.2f}" for c in cells)
            + f" | {ours:.2f} | {whole:.2f} |"
        )
    return "\n".join(lines)


def memory_table(runs: list[Run]) -> str:
    lines = [
        "| process | " + " | ".join(f"peak MB, {run.label}" for run in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for name in PROCESSES:
        cells = " | ".join(f"{run.peak_mb.get(name, 0.0):.0f}" for run in runs)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


LOG_LEVEL = re.compile(r"\[(warning|error|critical)\s*\]\s+(\S+)")
EXCEPTION = re.compile(r"^([\w-]+)\s*\| ((?:\w+\.)*\w+(?:Error|Exception|Input)): (.{0,160})")
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
