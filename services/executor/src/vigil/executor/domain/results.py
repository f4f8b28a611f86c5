"""From what a runner reports to the `StepResult` the engine gets (pure).

Every runner of commands (the local process runner, the Kubernetes pod runner) reports a
`ProcessOutcome`; `step_result` turns it into the step's state, error and output, the same
way for the executor and for `vigil test`. Output beyond `output_limit` per stream is cut
in the output and kept whole in an `Artifact` the output links to (`artifactId`), which
the caller stores before it publishes the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from vigil.common.documents import Artifact
from vigil.common.messages import Output, StepOutcome, StepRequest, StepResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessOutcome:
    """What running a command did: it exited, timed out, was cancelled, or never started."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    timed_out: bool = False
    cancelled: bool = False
    not_started: str | None = None  # why the command could not be started at all


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOutcome:
    """What an investigation did: its finding (camelCase, as the step output shows it), or
    why there is none, and the whole transcript."""

    finding: dict[str, JsonValue] | None = None
    error: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    tool_calls: int = 0
    timed_out: bool = False
    cancelled: bool = False


type RunOutcome = ProcessOutcome | AgentOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class SettledStep:
    result: StepResult
    artifact: Artifact | None = None  # the whole output, when `result.output` is cut


def cancelled_result(
    request: StepRequest, *, started_at: datetime, finished_at: datetime, error: str
) -> StepResult:
    return StepResult(
        execution_id=request.execution_id,
        step=request.step,
        attempt=request.attempt,
        outcome="cancelled",
        error=error,
        started_at=started_at,
        finished_at=finished_at,
    )


def _state(request: StepRequest, outcome: ProcessOutcome) -> tuple[StepOutcome, str | None]:
    if outcome.not_started is not None:
        return "failed", outcome.not_started
    if outcome.cancelled:
        return "cancelled", "cancelled"
    if outcome.timed_out:
        timeout = request.cli.timeout_seconds if request.cli is not None else 0.0
        return "timed_out", f"timed out after {timeout:g}s"
    if outcome.exit_code == 0:
        return "succeeded", None
    return "failed", f"exited with code {outcome.exit_code}"


def step_result(
    request: StepRequest,
    outcome: RunOutcome,
    *,
    started_at: datetime,
    finished_at: datetime,
    output_limit: int,
) -> SettledStep:
    """The result of one attempt; a command's output bounded to `output_limit` per stream."""
    if isinstance(outcome, AgentOutcome):
        return _agent_result(request, outcome, started_at=started_at, finished_at=finished_at)
    state, error = _state(request, outcome)
    output: Output | None = None
    artifact: Artifact | None = None
    if outcome.not_started is None and not outcome.cancelled:
        output, artifact = _bounded_output(request, outcome, output_limit, at=finished_at)
    return SettledStep(
        result=StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            outcome=state,
            output=output,
            error=error,
            started_at=started_at,
            finished_at=finished_at,
        ),
        artifact=artifact,
    )


def _bounded_output(
    request: StepRequest, outcome: ProcessOutcome, limit: int, *, at: datetime
) -> tuple[Output, Artifact | None]:
    stdout = outcome.stdout[:limit]
    stderr = outcome.stderr[:limit]
    cut = stdout != outcome.stdout or stderr != outcome.stderr
    artifact = None
    if cut:
        artifact = Artifact(
            id=f"{request.idempotency_key}/output",
            execution_id=request.execution_id,
            step=request.step,
            kind="cli-output",
            content=f"--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}",
            truncated=outcome.truncated,
            created_at=at,
        )
    output: Output = {
        # The argv as rendered and run: what the console shows, what a later step may quote.
        "command": list(request.cli.argv) if request.cli is not None else [],
        "exitCode": outcome.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": cut or outcome.truncated,
        "artifactId": artifact.id if artifact is not None else None,
    }
    return output, artifact


def _agent_result(
    request: StepRequest, outcome: AgentOutcome, *, started_at: datetime, finished_at: datetime
) -> SettledStep:
    """An investigation's result: its finding, and its transcript kept as an artifact."""
    transcript = Artifact(
        id=f"{request.idempotency_key}/transcript",
        execution_id=request.execution_id,
        step=request.step,
        kind="agent-transcript",
        content_type="application/json",
        content=json.dumps(outcome.transcript, indent=1, default=str),
        created_at=finished_at,
    )
    state: StepOutcome
    if outcome.cancelled:
        state, error = "cancelled", "cancelled"
    elif outcome.timed_out:
        timeout = request.agent.timeout_seconds if request.agent is not None else 0.0
        state, error = "timed_out", f"timed out after {timeout:g}s"
    elif outcome.finding is None:
        state, error = "failed", outcome.error or "no finding"
    else:
        state, error = "succeeded", None
    output: Output = {
        **(outcome.finding or {}),
        "toolCalls": outcome.tool_calls,
        "tokens": outcome.tokens,
        "transcriptId": transcript.id,
    }
    return SettledStep(
        result=StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            outcome=state,
            output=output,
            error=error,
            started_at=started_at,
            finished_at=finished_at,
        ),
        artifact=transcript,
    )
