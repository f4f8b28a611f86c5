"""What a notify request tells the sink for its default report: the other steps so far
(state, times, errors, an agent's findings), whether the step wrote its own title and
message, and the execution's trace id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from vigil.common.messages import (
    Alert,
    AlertReceived,
    Findings,
    Group,
    StepRequest,
    StepResult,
    StepSummary,
)
from vigil.common.resources import Workflow
from vigil.engine.domain.machine import Transition, advance, apply_result, new_execution
from vigil.engine.domain.requests import dispatches

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

DESCRIBE: dict[str, Any] = {"name": "describe", "cli": {"command": ["true"]}}
INVESTIGATE: dict[str, Any] = {"name": "investigate", "agent": {"goal": "why"}}
NEVER: dict[str, Any] = {"name": "never", "when": "false", "cli": {"command": ["true"]}}
REPORT: dict[str, Any] = {"name": "report", "notify": {"sinks": ["oncall"]}}
CUSTOM: dict[str, Any] = {
    "name": "custom",
    "notify": {"sinks": ["oncall"], "title": "{{ alert.labels.pod }} again"},
}
ANSWER: dict[str, JsonValue] = {
    "summary": "the disk holds old logs",
    "rootCause": "log rotation stopped",
    "evidence": ["df: 99%"],
    "recommendations": ["rotate the logs", "alert at 80%"],
    "confidence": 0.7,
    "toolCalls": 3,
    "transcriptId": "t-1",
}


def make_workflow(*steps: dict[str, Any]) -> Workflow:
    return Workflow.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "disk", "namespace": "shop"},
            "spec": {"steps": list(steps)},
        }
    )


def started(workflow: Workflow, *, trace_id: str | None = None) -> Transition:
    alert = Alert.model_validate(
        {
            "status": "firing",
            "fingerprint": "f1",
            "labels": {"alertname": "DiskFull", "pod": "db-0"},
            "annotations": {"summary": "db-0's disk is 97% full"},
            "startsAt": T0,
        }
    )
    execution = new_execution(
        execution_id="ex-1",
        workflow=workflow,
        received=AlertReceived(
            namespace="shop", source="am", received_at=T0, alert=alert, group=Group()
        ),
        trigger_key="tk",
        concurrency_key="f1",
        now=T0,
    ).model_copy(update={"trace_id": trace_id})
    return advance(execution, workflow, now=T0)


def finish(
    transition: Transition,
    workflow: Workflow,
    step: str,
    *,
    seconds: float,
    output: dict[str, JsonValue] | None = None,
    error: str | None = None,
) -> Transition:
    record = transition.execution.step(step)
    assert record.started_at is not None
    return apply_result(
        transition.execution,
        workflow,
        StepResult(
            execution_id="ex-1",
            step=step,
            attempt=record.attempt,
            outcome="failed" if error else "succeeded",
            output=output,
            error=error,
            started_at=record.started_at,
            finished_at=record.started_at + timedelta(seconds=seconds),
        ),
        now=record.started_at + timedelta(seconds=seconds),
    )


def notify_request(transition: Transition) -> StepRequest:
    (request,) = transition.dispatch
    assert request.notify is not None
    return request


def test_a_notify_request_summarises_the_steps_before_it_with_the_agents_findings() -> None:
    workflow = make_workflow(DESCRIBE, INVESTIGATE, NEVER, REPORT)
    running = finish(started(workflow, trace_id="4bf92f35"), workflow, "describe", seconds=2)
    transition = finish(running, workflow, "investigate", seconds=40, output=ANSWER)

    request = notify_request(transition)

    assert request.step == "report"
    assert request.notify is not None
    describe, investigate, never = request.notify.steps
    assert (describe.name, describe.kind, describe.state, describe.attempt) == (
        "describe",
        "cli",
        "succeeded",
        1,
    )
    assert describe.duration_seconds == 2
    assert (describe.findings, describe.error) == (None, None)
    assert investigate.duration_seconds == 40
    assert investigate.findings == Findings(
        summary="the disk holds old logs",
        root_cause="log rotation stopped",
        recommendations=["rotate the logs", "alert at 80%"],
        confidence=0.7,
    )
    assert (never.state, never.duration_seconds) == ("skipped", None)
    assert request.notify.trace_id == "4bf92f35"


def test_default_title_and_message_are_marked_as_not_the_steps_own() -> None:
    workflow = make_workflow(REPORT, CUSTOM)
    transition = started(workflow)

    default = notify_request(transition).notify
    custom = notify_request(finish(transition, workflow, "report", seconds=1)).notify

    assert default is not None
    assert custom is not None
    assert (default.custom_title, default.custom_message) == (False, False)
    assert default.title == "DiskFull is firing"
    assert default.steps == [], "nothing ran before the first step"
    assert default.trace_id is None
    assert (custom.title, custom.custom_title, custom.custom_message) == (
        "db-0 again",
        True,
        False,
    )
    assert [s.name for s in custom.steps] == ["report"]


def test_a_failed_step_carries_its_error_and_long_texts_are_clipped() -> None:
    workflow = make_workflow(
        {**INVESTIGATE, "continueOnError": True}, {**DESCRIBE, "continueOnError": True}, REPORT
    )
    long_answer: dict[str, JsonValue] = {
        "summary": "s" * 5000,
        "recommendations": [f"do {n}" for n in range(20)],
        "confidence": True,
    }
    running = finish(started(workflow), workflow, "investigate", seconds=1, output=long_answer)
    transition = finish(running, workflow, "describe", seconds=1, error="x" * 2000)

    request = notify_request(transition)

    assert request.notify is not None
    investigate, describe = request.notify.steps
    assert investigate.findings is not None
    assert len(investigate.findings.summary) == 1500
    assert investigate.findings.summary.endswith("…")
    assert investigate.findings.root_cause == ""
    assert len(investigate.findings.recommendations) == 8
    assert investigate.findings.confidence is None, "a boolean is not a confidence"
    assert describe.state == "failed"
    assert describe.error is not None
    assert len(describe.error) == 500


def test_an_agent_step_without_an_answer_has_no_findings() -> None:
    workflow = make_workflow({**INVESTIGATE, "continueOnError": True}, REPORT)
    transition = finish(started(workflow), workflow, "investigate", seconds=1, error="no model")

    request = notify_request(transition)

    assert request.notify is not None
    assert request.notify.steps == [
        StepSummary(
            name="investigate",
            kind="agent",
            state="failed",
            attempt=1,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
            error="no model",
            findings=None,
        )
    ]


def test_the_request_dispatched_is_the_one_a_redelivery_rebuilds_from_the_saved_document() -> None:
    """Requests are rendered once, when their step starts; a crash after the save makes the
    engine rebuild them from the document, and both must be the same message (same
    `Nats-Msg-Id`, same body), even for templates that read the steps' states."""
    states = {
        "name": "states",
        "cli": {
            "command": [
                "echo",
                "{{ steps.describe.state }} {{ steps.states.state }} {{ execution.state }}",
            ]
        },
    }
    report = {
        "name": "report",
        "notify": {
            "sinks": ["oncall"],
            "message": "{{ steps.states.output.stdout }} {{ steps.report.state }}",
        },
    }
    workflow = make_workflow(DESCRIBE, states, NEVER, report)
    first = started(workflow)
    transitions = [first]
    transitions.append(finish(first, workflow, "describe", seconds=1))
    transitions.append(
        finish(transitions[-1], workflow, "states", seconds=1, output={"stdout": "ok"})
    )
    for transition in transitions:
        assert transition.dispatch, "every transition here starts a worker step"
        assert transition.dispatch == dispatches(transition.execution, workflow)
    (states_request,) = transitions[1].dispatch
    assert states_request.cli is not None
    assert states_request.cli.argv[1] == "succeeded running running"
    assert notify_request(transitions[2]).notify.message == "ok running"  # type: ignore[union-attr]
