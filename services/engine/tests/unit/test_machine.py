"""The execution state machine: starting, evaluating, dispatching, recording results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from vigil.common.documents import Execution
from vigil.common.messages import Alert, AlertReceived, Group, StepOutcome, StepResult
from vigil.common.resources import Workflow
from vigil.engine.domain.machine import (
    Transition,
    advance,
    apply_result,
    new_execution,
)
from vigil.engine.domain.requests import dispatches

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=5)
T2 = T0 + timedelta(seconds=10)
T3 = T0 + timedelta(seconds=15)

DESCRIBE: dict[str, Any] = {
    "name": "describe",
    "cli": {
        "command": [
            "kubectl",
            "describe",
            "pod",
            "{{ alert.labels.pod }}",
            "-n",
            "{{ alert.labels.namespace }}",
        ],
        "timeout": "60s",
    },
}
OOM: dict[str, Any] = {
    "name": "oom",
    "condition": 'steps.describe.output.stdout.contains("OOMKilled")',
}
REPORT: dict[str, Any] = {
    "name": "report",
    "when": "steps.oom.output.result",
    "notify": {"sinks": ["oncall"], "title": "{{ alert.labels.pod }} was OOMKilled"},
}
ANNOUNCE: dict[str, Any] = {"name": "announce", "notify": {"sinks": ["oncall"]}}
TELL: dict[str, Any] = {
    "name": "tell",
    "notify": {"sinks": ["oncall"], "message": "{{ workflow.name }} failed: {{ execution.error }}"},
}


def make_workflow(
    steps: list[dict[str, Any]], on_failure: list[dict[str, Any]] | None = None
) -> Workflow:
    return Workflow.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "pod-crashloop", "namespace": "shop"},
            "spec": {"steps": steps, "onFailure": on_failure or []},
        }
    )


def make_received() -> AlertReceived:
    alert = Alert.model_validate(
        {
            "status": "firing",
            "fingerprint": "3a0f6a6b1e9d2c11",
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-7f9c"},
            "annotations": {"summary": "api-7f9c is crash looping"},
            "startsAt": T0,
        }
    )
    return AlertReceived(
        namespace="shop",
        source="alertmanager",
        received_at=T0,
        alert=alert,
        group=Group(key="{}:{}", receiver="vigil"),
    )


def created(workflow: Workflow) -> Execution:
    return new_execution(
        execution_id="ex-1",
        workflow=workflow,
        received=make_received(),
        trigger_key="tk",
        concurrency_key="shop/api-7f9c",
        now=T0,
    )


def started(workflow: Workflow) -> Transition:
    return advance(created(workflow), workflow, now=T0)


def result(
    step: str,
    *,
    attempt: int = 1,
    outcome: StepOutcome = "succeeded",
    output: dict[str, JsonValue] | None = None,
    error: str | None = None,
) -> StepResult:
    return StepResult(
        execution_id="ex-1",
        step=step,
        attempt=attempt,
        outcome=outcome,
        output=output,
        error=error,
        started_at=T0,
        finished_at=T1,
    )


def describe_output(stdout: str) -> dict[str, JsonValue]:
    return {"exitCode": 0, "stdout": stdout, "stderr": "", "truncated": False}


def states(execution: Execution) -> dict[str, str]:
    return {step.name: step.state for step in execution.steps}


# --- starting ---------------------------------------------------------------------------


def test_new_execution_is_pending_with_every_step_pending() -> None:
    execution = created(make_workflow([DESCRIBE, OOM, REPORT], [TELL]))

    assert execution.state == "pending"
    assert [(s.name, s.kind, s.state, s.on_failure, s.attempt) for s in execution.steps] == [
        ("describe", "cli", "pending", False, 0),
        ("oom", "condition", "pending", False, 0),
        ("report", "notify", "pending", False, 0),
        ("tell", "notify", "pending", True, 0),
    ]
    assert execution.alert.labels["pod"] == "api-7f9c"
    assert execution.group.receiver == "vigil"
    assert (execution.trigger_key, execution.concurrency_key) == ("tk", "shop/api-7f9c")


def test_advancing_a_new_execution_runs_and_dispatches_the_first_cli_step() -> None:
    transition = started(make_workflow([DESCRIBE, OOM, REPORT]))

    execution = transition.execution
    assert transition.changed
    assert execution.state == "running"
    assert states(execution) == {"describe": "running", "oom": "pending", "report": "pending"}
    describe = execution.step("describe")
    assert (describe.attempt, describe.started_at) == (1, T0)
    (request,) = transition.dispatch
    assert request.step == "describe"
    assert request.attempt == 1
    assert request.idempotency_key == "ex-1/describe/1"
    assert request.cli is not None
    assert request.cli.argv == ["kubectl", "describe", "pod", "api-7f9c", "-n", "shop"]
    assert request.cli.timeout_seconds == 60.0
    assert [(e.state, e.at) for e in transition.events] == [("running", T0)]


def test_advancing_again_without_a_result_changes_nothing_and_redispatches() -> None:
    workflow = make_workflow([DESCRIBE, OOM])
    first = started(workflow)

    again = advance(first.execution, workflow, now=T1)

    assert not again.changed
    assert again.execution == first.execution
    assert again.dispatch == first.dispatch
    assert again.events == []


def test_step_whose_when_is_false_is_skipped_and_the_next_one_starts() -> None:
    skipped = {**DESCRIBE, "when": 'alert.labels.namespace == "kube-system"'}
    workflow = make_workflow([skipped, ANNOUNCE])

    transition = started(workflow)

    assert states(transition.execution) == {"describe": "skipped", "announce": "running"}
    assert [r.step for r in transition.dispatch] == ["announce"]


def test_skipped_step_is_visible_to_later_steps_with_a_null_output() -> None:
    skipped = {**DESCRIBE, "when": "false"}
    probe = {
        "name": "probe",
        "condition": 'steps.describe.state == "skipped" && steps.describe.output == null',
    }

    execution = started(make_workflow([skipped, probe])).execution

    assert execution.step("probe").output == {"result": True}
    assert execution.state == "succeeded"


def test_execution_of_only_engine_steps_finishes_in_one_advance() -> None:
    workflow = make_workflow([{"name": "check", "condition": 'alert.status == "firing"'}])

    transition = started(workflow)

    execution = transition.execution
    assert execution.state == "succeeded"
    assert execution.step("check").output == {"result": True}
    assert execution.finished_at == T0
    assert [e.state for e in transition.events] == ["running", "succeeded"]
    assert transition.dispatch == []


# --- results ----------------------------------------------------------------------------


def test_succeeded_cli_result_is_recorded_and_the_next_step_starts() -> None:
    workflow = make_workflow([DESCRIBE, OOM, REPORT])
    output = describe_output("Last State: Terminated\n  Reason: OOMKilled")

    transition = apply_result(
        started(workflow).execution, workflow, result("describe", output=output), now=T2
    )

    execution = transition.execution
    describe = execution.step("describe")
    assert (describe.state, describe.output) == ("succeeded", output)
    assert (describe.started_at, describe.finished_at) == (T0, T1)
    assert execution.step("oom").state == "succeeded"
    assert execution.step("oom").output == {"result": True}
    assert execution.step("report").state == "running"
    assert execution.state == "running"
    assert execution.updated_at == T2
    (request,) = transition.dispatch
    assert request.notify is not None
    assert request.notify.title == "api-7f9c was OOMKilled"
    assert request.notify.sinks == ["oncall"]
    assert request.notify.message == "api-7f9c is crash looping"  # the default message


def test_condition_false_makes_a_dependent_when_skip_the_step() -> None:
    workflow = make_workflow([DESCRIBE, OOM, REPORT])
    output = describe_output("Reason: Error")

    transition = apply_result(
        started(workflow).execution, workflow, result("describe", output=output), now=T2
    )

    assert transition.execution.step("oom").output == {"result": False}
    assert states(transition.execution)["report"] == "skipped"
    assert transition.execution.state == "succeeded"


def test_last_step_finishing_succeeds_the_execution_with_a_final_event() -> None:
    workflow = make_workflow([DESCRIBE, OOM, REPORT], [TELL])
    running = apply_result(
        started(workflow).execution,
        workflow,
        result("describe", output=describe_output("OOMKilled")),
        now=T1,
    ).execution

    transition = apply_result(
        running, workflow, result("report", output={"deliveries": []}), now=T2
    )

    execution = transition.execution
    assert execution.state == "succeeded"
    assert execution.finished_at == T2
    assert execution.error is None
    assert states(execution) == {
        "describe": "succeeded",
        "oom": "succeeded",
        "report": "succeeded",
        "tell": "skipped",
    }
    assert transition.dispatch == []
    (event,) = transition.events
    assert (event.state, event.at, event.execution_id, event.workflow) == (
        "succeeded",
        T2,
        "ex-1",
        "pod-crashloop",
    )


def test_failed_step_skips_the_rest_and_runs_on_failure_with_the_error() -> None:
    workflow = make_workflow([DESCRIBE, OOM, REPORT], [TELL])

    transition = apply_result(
        started(workflow).execution,
        workflow,
        result("describe", outcome="failed", error="exit code 1"),
        now=T2,
    )

    execution = transition.execution
    assert execution.state == "running"
    assert execution.error == "step describe failed: exit code 1"
    assert states(execution) == {
        "describe": "failed",
        "oom": "skipped",
        "report": "skipped",
        "tell": "running",
    }
    (request,) = transition.dispatch
    assert request.notify is not None
    assert request.notify.message == "pod-crashloop failed: step describe failed: exit code 1"
    assert transition.events == []


def test_execution_ends_failed_after_its_on_failure_steps() -> None:
    workflow = make_workflow([DESCRIBE, OOM], [TELL])
    failing = apply_result(
        started(workflow).execution,
        workflow,
        result("describe", outcome="failed", error="exit code 1"),
        now=T1,
    ).execution

    transition = apply_result(failing, workflow, result("tell"), now=T2)

    execution = transition.execution
    assert execution.state == "failed"
    assert execution.finished_at == T2
    assert execution.error == "step describe failed: exit code 1"
    (event,) = transition.events
    assert (event.state, event.error) == ("failed", "step describe failed: exit code 1")


def test_failed_step_without_on_failure_fails_the_execution_at_once() -> None:
    workflow = make_workflow([DESCRIBE, OOM])

    transition = apply_result(
        started(workflow).execution, workflow, result("describe", outcome="timed_out"), now=T2
    )

    assert transition.execution.state == "failed"
    assert transition.execution.error == "step describe timed_out"
    assert states(transition.execution) == {"describe": "timed_out", "oom": "skipped"}
    assert [e.state for e in transition.events] == ["failed"]


def test_continue_on_error_keeps_going_and_the_execution_succeeds() -> None:
    tolerant = {**DESCRIBE, "continueOnError": True}
    workflow = make_workflow(
        [tolerant, {"name": "after", "condition": 'steps.describe.state == "failed"'}], [TELL]
    )

    transition = apply_result(
        started(workflow).execution,
        workflow,
        result("describe", outcome="failed", error="exit code 1"),
        now=T2,
    )

    execution = transition.execution
    assert execution.state == "succeeded"
    assert execution.error is None
    assert execution.step("describe").error == "exit code 1"
    assert execution.step("after").output == {"result": True}
    assert execution.step("tell").state == "skipped"


def test_condition_that_fails_to_evaluate_fails_its_step_with_the_reason() -> None:
    workflow = make_workflow([{"name": "check", "condition": 'alert.labels.team == "ops"'}])

    execution = started(workflow).execution

    assert execution.state == "failed"
    check = execution.step("check")
    assert check.state == "failed"
    assert check.error is not None
    assert "no such key 'team'" in check.error


def test_condition_dividing_by_zero_fails_its_step_instead_of_raising() -> None:
    workflow = make_workflow([{"name": "check", "condition": "size(alert.labels) / 0 == 1"}])

    assert started(workflow).execution.step("check").state == "failed"


def test_template_error_in_a_cli_step_fails_that_step_with_the_reason() -> None:
    broken = {"name": "describe", "cli": {"command": ["kubectl", "{{ alert.labels.container }}"]}}
    workflow = make_workflow([broken, OOM])

    transition = started(workflow)

    execution = transition.execution
    describe = execution.step("describe")
    assert describe.state == "failed"
    assert describe.error is not None
    assert "container" in describe.error
    assert execution.state == "failed"
    assert execution.error is not None
    assert execution.error.startswith("step describe failed: template")
    assert transition.dispatch == []


# --- stale and repeated results ---------------------------------------------------------


def test_result_for_a_wrong_attempt_changes_nothing_but_redispatches() -> None:
    workflow = make_workflow([DESCRIBE, OOM])
    running = started(workflow)

    transition = apply_result(
        running.execution, workflow, result("describe", attempt=2, outcome="failed"), now=T2
    )

    assert not transition.changed
    assert transition.execution == running.execution
    assert transition.dispatch == running.dispatch
    # Only the current state's event again (same message id: JetStream drops the repeat).
    assert [e.state for e in transition.events] == ["running"]


def test_repeated_result_changes_nothing_and_redispatches_the_running_step() -> None:
    workflow = make_workflow([DESCRIBE, ANNOUNCE])
    delivered = result("describe", output=describe_output("ok"))
    once = apply_result(started(workflow).execution, workflow, delivered, now=T1)

    twice = apply_result(once.execution, workflow, delivered, now=T2)

    assert not twice.changed
    assert twice.execution == once.execution
    assert [r.step for r in twice.dispatch] == ["announce"]
    assert twice.dispatch == once.dispatch


def test_result_for_an_unknown_step_changes_nothing() -> None:
    workflow = make_workflow([DESCRIBE])
    running = started(workflow).execution

    transition = apply_result(running, workflow, result("nope"), now=T2)

    assert not transition.changed
    assert transition.execution == running


def test_finished_execution_ignores_results_and_dispatches_nothing() -> None:
    workflow = make_workflow([DESCRIBE])
    done = apply_result(started(workflow).execution, workflow, result("describe"), now=T1)
    assert done.execution.state == "succeeded"

    again = apply_result(done.execution, workflow, result("describe"), now=T2)
    advanced = advance(done.execution, workflow, now=T3)

    assert not again.changed
    assert not advanced.changed
    assert again.execution == advanced.execution == done.execution
    assert dispatches(done.execution, workflow) == []


def test_dispatches_lists_the_running_steps_request() -> None:
    workflow = make_workflow([DESCRIBE, OOM])
    running = started(workflow)

    assert dispatches(running.execution, workflow) == running.dispatch


# --- not implemented yet ----------------------------------------------------------------


def test_failed_attempt_with_retries_left_does_not_fail_the_step() -> None:
    retried = {**DESCRIBE, "retry": {"attempts": 3, "backoff": "10s"}}
    workflow = make_workflow([retried, OOM])

    transition = apply_result(
        started(workflow).execution, workflow, result("describe", outcome="failed"), now=T2
    )

    assert transition.execution.step("describe").state != "failed"
    assert not transition.execution.finished
