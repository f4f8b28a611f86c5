"""Durable time in the state machine: retries with backoff, step deadlines, waits, the
workflow timeout and cancellation. Every later action is a stored time (`wake_at`), and
`on_timer` is what the engine's timer loop calls when it falls due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.common.documents import Execution
from vigil.common.messages import Alert, AlertReceived, StepOutcome, StepResult
from vigil.common.resources import Workflow
from vigil.engine.domain.machine import (
    WORKER_GRACE,
    Transition,
    abandon,
    advance,
    alert_changed,
    apply_result,
    cancel,
    new_execution,
    on_timer,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def workflow(steps: list[dict[str, Any]], **spec: Any) -> Workflow:
    return Workflow.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "wf", "namespace": "ops"},
            "spec": {"steps": steps, **spec},
        }
    )


def alert(status: str = "firing") -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "fingerprint": "f1",
            "labels": {"alertname": "Disk"},
            "startsAt": "2026-11-24T08:00:00Z",
        }
    )


def start(flow: Workflow) -> Transition:
    received = AlertReceived(namespace="ops", source="am", received_at=T0, alert=alert())
    execution = new_execution(
        execution_id="01EX",
        workflow=flow,
        received=received,
        trigger_key="tk",
        concurrency_key="f1",
        now=T0,
    )
    return advance(execution, flow, now=T0)


def result(step: str, outcome: StepOutcome, *, attempt: int = 1, at: float = 1) -> StepResult:
    return StepResult(
        execution_id="01EX",
        step=step,
        attempt=attempt,
        outcome=outcome,
        output={"exitCode": 0 if outcome == "succeeded" else 1},
        error=None if outcome == "succeeded" else "exited with code 1",
        started_at=seconds(at - 0.5),
        finished_at=seconds(at),
    )


CLI = {"name": "probe", "cli": {"command": ["true"], "timeout": "20s"}}
NOTIFY = {"name": "tell", "notify": {"sinks": ["log"]}}


def test_failed_attempt_with_retries_left_waits_for_its_backoff_then_runs_again() -> None:
    flow = workflow([{**CLI, "retry": {"attempts": 3, "backoff": "10s"}}, NOTIFY])
    running = start(flow).execution

    first = apply_result(running, flow, result("probe", "failed", at=1), now=seconds(1))
    probe = first.execution.step("probe")
    assert (probe.state, probe.attempt) == ("pending", 1)
    assert probe.not_before == seconds(11)
    assert probe.error == "exited with code 1"  # the failed attempt stays visible
    assert first.execution.wake_at == seconds(11)
    assert first.dispatch == []

    early = on_timer(first.execution, flow, now=seconds(5))
    assert early.dispatch == []
    assert early.execution.step("probe").state == "pending"

    retried = on_timer(first.execution, flow, now=seconds(11))
    assert [(r.step, r.attempt) for r in retried.dispatch] == [("probe", 2)]
    assert retried.dispatch[0].idempotency_key == "01EX/probe/2"

    second = apply_result(
        retried.execution, flow, result("probe", "failed", attempt=2, at=12), now=seconds(12)
    )
    assert second.execution.step("probe").not_before == seconds(12 + 20)  # 10s doubled


def test_the_last_failed_attempt_fails_the_step_and_the_execution() -> None:
    flow = workflow([{**CLI, "retry": {"attempts": 2, "backoff": "1s"}}])
    running = start(flow).execution
    waiting = apply_result(running, flow, result("probe", "failed"), now=seconds(1)).execution
    again = on_timer(waiting, flow, now=seconds(2)).execution
    done = apply_result(again, flow, result("probe", "failed", attempt=2, at=3), now=seconds(3))
    assert done.execution.step("probe").state == "failed"
    assert done.execution.state == "failed"
    assert done.execution.wake_at is None


def test_a_running_step_without_a_result_times_out_at_its_deadline() -> None:
    flow = workflow([CLI, NOTIFY])
    running = start(flow).execution
    deadline = seconds(20) + WORKER_GRACE
    assert running.step("probe").deadline_at == deadline
    assert running.wake_at == deadline

    timed_out = on_timer(running, flow, now=deadline)
    probe = timed_out.execution.step("probe")
    assert probe.state == "timed_out"
    assert timed_out.execution.state == "failed"
    assert [(c.step, c.attempt) for c in timed_out.cancellations] == [("probe", 1)]
    late = apply_result(timed_out.execution, flow, result("probe", "succeeded"), now=deadline)
    assert not late.changed  # the worker's late answer is ignored


def test_a_wait_ends_early_when_until_holds_after_the_alert_changes() -> None:
    flow = workflow(
        [
            {"name": "settle", "wait": {"duration": "5m", "until": 'alert.status == "resolved"'}},
            NOTIFY,
        ]
    )
    waiting = start(flow).execution
    assert waiting.step("settle").state == "running"
    assert waiting.wake_at == seconds(300)

    still = alert_changed(waiting, flow, alert("firing"), now=seconds(30))
    assert not still.changed

    resolved = alert_changed(waiting, flow, alert("resolved"), now=seconds(60))
    settle = resolved.execution.step("settle")
    assert settle.state == "succeeded"
    assert settle.output == {"until": True, "waitedSeconds": 60.0}
    assert resolved.execution.alert.status == "resolved"
    assert [r.step for r in resolved.dispatch] == ["tell"]


def test_a_wait_that_runs_out_succeeds_with_until_false() -> None:
    flow = workflow(
        [
            {"name": "settle", "wait": {"duration": "5m", "until": 'alert.status == "resolved"'}},
            NOTIFY,
        ]
    )
    waiting = start(flow).execution
    assert not on_timer(waiting, flow, now=seconds(299)).changed
    ended = on_timer(waiting, flow, now=seconds(300))
    assert ended.execution.step("settle").output == {"until": False, "waitedSeconds": 300.0}
    assert [r.step for r in ended.dispatch] == ["tell"]


def test_the_workflow_timeout_stops_everything() -> None:
    flow = workflow([CLI, NOTIFY], timeout="10s")
    running = start(flow).execution
    assert running.deadline_at == seconds(10)
    assert running.wake_at == seconds(10)

    stopped = on_timer(running, flow, now=seconds(10))
    assert stopped.execution.state == "timed_out"
    assert stopped.execution.error == "workflow timed out after 10s"
    assert [s.state for s in stopped.execution.steps] == ["cancelled", "skipped"]
    assert stopped.execution.finished_at == seconds(10)
    assert stopped.events[-1].state == "timed_out"
    assert stopped.dispatch == []


def test_cancel_stops_the_running_step_and_runs_nothing_further() -> None:
    flow = workflow([CLI, NOTIFY], onFailure=[{"name": "cleanup", "notify": {"sinks": ["log"]}}])
    running = start(flow).execution
    cancelled = cancel(running, flow, reason="cancelled by operator", now=seconds(2))
    execution = cancelled.execution
    assert execution.state == "cancelled"
    assert [s.state for s in execution.steps] == ["cancelled", "skipped", "skipped"]
    assert [c.step for c in cancelled.cancellations] == ["probe"]
    assert cancelled.dispatch == []
    assert not cancel(execution, flow, reason="again", now=seconds(3)).changed


def test_a_finished_execution_has_no_timer() -> None:
    flow = workflow([CLI])
    running: Execution = start(flow).execution
    done = apply_result(running, flow, result("probe", "succeeded"), now=seconds(1))
    assert done.execution.state == "succeeded"
    assert done.execution.wake_at is None


def test_an_execution_whose_workflow_was_deleted_fails_instead_of_hanging() -> None:
    flow = workflow([CLI, NOTIFY])
    running = start(flow).execution
    gone = abandon(running, reason="workflow ops/wf no longer exists", now=seconds(3))
    execution = gone.execution
    assert execution.state == "failed"
    assert execution.error == "workflow ops/wf no longer exists"
    assert [s.state for s in execution.steps] == ["cancelled", "skipped"]
    assert execution.wake_at is None
    assert [c.step for c in gone.cancellations] == ["probe"]
    assert gone.events[-1].state == "failed"
