"""`step_result`: what a runner's outcome means as a step result (pure; shared with
`vigil test`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vigil.common.messages import CliStep, StepRequest
from vigil.common.testing import EPOCH
from vigil.executor.domain.results import ProcessOutcome, SettledStep, step_result

REQUEST = StepRequest(
    execution_id="01EX",
    namespace="ops",
    workflow="disk",
    step="measure",
    attempt=2,
    idempotency_key="01EX/measure/2",
    cli=CliStep(argv=["df"], timeout_seconds=12.5),
)


def settle(outcome: ProcessOutcome, limit: int = 16) -> SettledStep:
    return step_result(
        REQUEST,
        outcome,
        started_at=EPOCH,
        finished_at=EPOCH + timedelta(seconds=3),
        output_limit=limit,
    )


@pytest.mark.parametrize(
    ("outcome", "state", "error"),
    [
        (ProcessOutcome(exit_code=0), "succeeded", None),
        (ProcessOutcome(exit_code=3), "failed", "exited with code 3"),
        (ProcessOutcome(exit_code=None, timed_out=True), "timed_out", "timed out after 12.5s"),
        (ProcessOutcome(exit_code=None, cancelled=True), "cancelled", "cancelled"),
        (
            ProcessOutcome(exit_code=None, not_started="cannot run 'df': No such file"),
            "failed",
            "cannot run 'df': No such file",
        ),
    ],
)
def test_the_outcome_decides_the_state_and_the_error(
    outcome: ProcessOutcome, state: str, error: str | None
) -> None:
    result = settle(outcome).result
    assert (result.outcome, result.error) == (state, error)
    assert (result.execution_id, result.step, result.attempt) == ("01EX", "measure", 2)
    assert (result.finished_at - result.started_at).total_seconds() == 3


def test_a_step_that_never_ran_to_an_end_has_no_output() -> None:
    assert settle(ProcessOutcome(exit_code=None, cancelled=True)).result.output is None
    assert settle(ProcessOutcome(exit_code=None, not_started="x")).result.output is None


def test_a_timed_out_step_keeps_what_it_printed() -> None:
    result = settle(ProcessOutcome(exit_code=None, stdout="partial", timed_out=True)).result
    assert result.output is not None
    assert result.output["stdout"] == "partial"


def test_output_within_the_limit_is_kept_as_it_is_without_an_artifact() -> None:
    settled = settle(ProcessOutcome(exit_code=0, stdout="short", stderr="warn", truncated=True))
    assert settled.artifact is None
    assert settled.result.output == {
        "command": ["df"],  # as rendered and run
        "exitCode": 0,
        "stdout": "short",
        "stderr": "warn",
        "truncated": True,  # the runner already cut it: still flagged
        "artifactId": None,
    }


def test_output_beyond_the_limit_is_cut_per_stream_and_kept_whole_in_an_artifact() -> None:
    settled = settle(ProcessOutcome(exit_code=0, stdout="o" * 20, stderr="e" * 5))
    output = settled.result.output
    assert output is not None
    assert output["stdout"] == "o" * 16
    assert output["stderr"] == "e" * 5
    assert output["truncated"] is True
    assert settled.artifact is not None
    assert output["artifactId"] == settled.artifact.id == "01EX/measure/2/output"
    assert settled.artifact.content == f"--- stdout\n{'o' * 20}\n--- stderr\n{'e' * 5}"
