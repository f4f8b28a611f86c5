"""What the console shows of a document, computed before any template runs: a step
timeline scaled to time and the outputs of each kind of step (durations and an alert's
telling labels are `vigil.common.presenting`'s, shared with the terminal views). Pure
functions over the stored documents, so the pages' content is unit-tested without HTML."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vigil.common.documents import Execution, StepRecord
from vigil.common.presenting import duration_text

MIN_BAR_PERCENT = 0.6  # a step of a millisecond still shows as a sliver


def execution_seconds(execution: Execution, now: datetime) -> float:
    """How long it ran: until it finished, or until now."""
    end = execution.finished_at or now
    return max((end - execution.created_at).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One step attempt on the timeline: where it starts and how wide it is, in percent of
    the execution's span, and the words that say the same for a screen reader."""

    step: str
    kind: str
    state: str
    attempt: int
    left: float
    width: float
    label: str
    waiting: bool  # a wait step: drawn hatched, it is time passing, not work
    retry_at: float | None  # a pending retry's time, in percent, when it falls in the span


def timeline(execution: Execution, now: datetime) -> list[Bar]:
    """A bar per step that started (its latest attempt), scaled to the execution's span."""
    start = execution.created_at
    end = execution.finished_at or now
    for step in execution.steps:
        # A deadline is not drawn: five minutes of timeout would squash the work to a line.
        if step.finished_at is not None and step.finished_at > end:
            end = step.finished_at
    span = max((end - start).total_seconds(), 0.001)

    def percent(moment: datetime) -> float:
        return min(max((moment - start).total_seconds() / span * 100, 0.0), 100.0)

    bars = []
    for step in execution.steps:
        retry_at = None
        if step.state == "pending" and step.not_before is not None:
            retry_at = percent(step.not_before)
        if step.started_at is None:
            if retry_at is not None:
                bars.append(_pending_retry(step, retry_at))
            continue
        finish = step.finished_at or (now if not execution.finished else end)
        waiting = step.kind == "wait"
        left = percent(step.started_at)
        width = max(percent(finish) - left, MIN_BAR_PERCENT)
        width = min(width, 100.0 - left) if left < 100.0 else MIN_BAR_PERCENT
        seconds = (finish - step.started_at).total_seconds()
        attempt = f", attempt {step.attempt}" if step.attempt > 1 else ""
        label = f"{step.name}: {step.state.replace('_', ' ')}{attempt}, {duration_text(seconds)}"
        bars.append(
            Bar(
                step=step.name,
                kind=step.kind,
                state=step.state,
                attempt=step.attempt,
                left=round(left, 2),
                width=round(width, 2),
                label=label,
                waiting=waiting,
                retry_at=retry_at,
            )
        )
    return bars


def _pending_retry(step: StepRecord, retry_at: float) -> Bar:
    return Bar(
        step=step.name,
        kind=step.kind,
        state=step.state,
        attempt=step.attempt,
        left=round(retry_at, 2),
        width=MIN_BAR_PERCENT,
        label=f"{step.name}: retry {step.attempt + 1} scheduled",
        waiting=False,
        retry_at=round(retry_at, 2),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    claim: str
    tool_call: str | None  # the id of the tool call it rests on, linked on the page


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """An agent step's answer as the page lays it out."""

    summary: str
    root_cause: str | None
    confidence: str | None
    evidence: list[Evidence]
    recommendations: list[str]
    tool_calls: list[dict[str, Any]]
    transcript_id: str | None


def finding(step: StepRecord) -> Finding | None:
    """The finding of an agent step, or None (another kind, or no answer yet)."""
    output = step.output
    if step.kind != "agent" or not output or not isinstance(output.get("summary"), str):
        return None
    evidence = []
    for item in _list(output.get("evidence")):
        if isinstance(item, dict) and isinstance(item.get("claim"), str):
            call = item.get("toolCall")
            evidence.append(Evidence(claim=item["claim"], tool_call=str(call) if call else None))
        elif isinstance(item, str):
            evidence.append(Evidence(claim=item, tool_call=None))
    confidence = output.get("confidence")
    root_cause = output.get("rootCause")
    transcript = output.get("transcriptId")
    return Finding(
        summary=str(output["summary"]),
        root_cause=str(root_cause) if root_cause else None,
        confidence=str(confidence) if confidence is not None else None,
        evidence=evidence,
        recommendations=[str(r) for r in _list(output.get("recommendations"))],
        tool_calls=[c for c in _list(output.get("toolCalls")) if isinstance(c, dict)],
        transcript_id=str(transcript) if transcript else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    title: str
    message: str


def notification(step: StepRecord) -> Notification | None:
    """What a notify step sent (its title and the start of its message), or None."""
    output = step.output
    if step.kind != "notify" or not output or not isinstance(output.get("title"), str):
        return None
    return Notification(title=str(output["title"]), message=str(output.get("message") or ""))


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutput:
    command: str  # the argv as rendered and run, quoted as a shell would read it
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    artifact_id: str | None


def command_output(step: StepRecord) -> CommandOutput | None:
    """A cli step's output, or None."""
    output = step.output
    if step.kind != "cli" or not output:
        return None
    code = output.get("exitCode")
    artifact = output.get("artifactId")
    argv = output.get("command")
    return CommandOutput(
        command=shlex.join(str(a) for a in argv) if isinstance(argv, list) else "",
        exit_code=code if isinstance(code, int) else None,
        stdout=str(output.get("stdout") or ""),
        stderr=str(output.get("stderr") or ""),
        truncated=bool(output.get("truncated")),
        artifact_id=str(artifact) if artifact else None,
    )


# --- the overview ------------------------------------------------------------------------

CHART_MINUTES = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One minute of a per-minute chart: its height in percent of the busiest minute."""

    minute: datetime
    count: int
    height: float


def per_minute(
    moments: list[datetime], now: datetime, minutes: int = CHART_MINUTES
) -> list[Column]:
    """How many of `moments` fell in each of the last `minutes` minutes, oldest first."""
    end = now.replace(second=0, microsecond=0)
    counts = [0] * minutes
    for moment in moments:
        back = int((end - moment.replace(second=0, microsecond=0)).total_seconds() // 60)
        if 0 <= back < minutes:
            counts[minutes - 1 - back] += 1
    top = max(counts) or 1
    return [
        Column(
            minute=end - timedelta(minutes=minutes - 1 - index),
            count=count,
            height=round(100 * count / top, 1),
        )
        for index, count in enumerate(counts)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Share:
    """A bar of a horizontal bar chart: a label, its count, its width in percent."""

    label: str
    count: int
    width: float


def shares(counts: dict[str, int], order: tuple[str, ...]) -> list[Share]:
    """`counts` as bars in `order` (absent ones at zero), scaled to the largest."""
    top = max(counts.values(), default=0) or 1
    return [
        Share(label=key, count=counts.get(key, 0), width=round(100 * counts.get(key, 0) / top, 1))
        for key in order
    ]
