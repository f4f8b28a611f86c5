"""The execution state machine (DESIGN §4, §5, §6): pure functions from state to state.

`advance` runs what the engine evaluates itself (`when`, `condition`, the start and end of
`wait`), starts the next step that needs a worker (`cli`, `notify`), and finishes the
execution when nothing is left. `apply_result` records a worker's result (a stale or
repeated one changes nothing), `on_timer` handles what fell due (step deadlines, retry
backoff, waits, the workflow timeout), `alert_changed` re-evaluates waits, `cancel` stops.

Every time the engine must act later is stored in the document (`deadline_at`,
`not_before`, and their minimum as `wake_at`) and claimed by the timer loop: nothing waits
in process memory. Nothing here does I/O: the handler saves with compare-and-set, then
publishes the requests, cancellations and events the transition lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vigil.common.documents import FINAL_STEP_STATES, Execution, StepRecord, alert_id
from vigil.common.durations import parse_duration
from vigil.common.errors import VigilError
from vigil.common.expressions import evaluate_bool
from vigil.common.messages import (
    Alert,
    AlertReceived,
    ExecutionEvent,
    ExecutionState,
    StepRequest,
    StepResult,
)
from vigil.common.resources import Step, Workflow
from vigil.engine.domain.context import execution_context
from vigil.engine.domain.requests import (
    WORKER_KINDS,
    build_request,
    dispatches,
    step_timeout_seconds,
)

# A worker enforces a step's timeout itself; the engine's own deadline, this much later,
# catches a step whose worker and every redelivery were lost.
WORKER_GRACE = timedelta(seconds=30)
MAX_RETRY_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    """A worker should stop this step attempt (best effort; the document already says so)."""

    execution_id: str
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    execution: Execution
    changed: bool
    dispatch: list[StepRequest] = field(default_factory=list)
    events: list[ExecutionEvent] = field(default_factory=list)
    cancellations: list[Cancellation] = field(default_factory=list)


def new_execution(
    *,
    execution_id: str,
    workflow: Workflow,
    received: AlertReceived,
    trigger_key: str,
    concurrency_key: str,
    now: datetime,
    trace_id: str | None = None,
    trace_parent: str | None = None,
) -> Execution:
    spec = workflow.spec
    steps = [StepRecord(name=s.name, kind=s.kind) for s in spec.steps]
    steps += [StepRecord(name=s.name, kind=s.kind, on_failure=True) for s in spec.on_failure]
    deadline = now + timedelta(seconds=parse_duration(spec.timeout)) if spec.timeout else None
    return Execution(
        id=execution_id,
        namespace=workflow.metadata.namespace,
        workflow=workflow.metadata.name,
        workflow_generation=workflow.metadata.generation,
        source=received.source,
        alert_id=alert_id(received.namespace, received.source, received.alert.fingerprint),
        trigger_key=trigger_key,
        concurrency_key=concurrency_key,
        alert=received.alert,
        group=received.group,
        created_at=now,
        updated_at=now,
        deadline_at=deadline,
        wake_at=deadline,
        steps=steps,
        trace_id=trace_id,
        trace_parent=trace_parent,
    )


def retry_backoff(spec: Step, failed_attempt: int) -> timedelta:
    """Exponential backoff after attempt `failed_attempt` (1-based), capped."""
    assert spec.retry is not None
    base = timedelta(seconds=parse_duration(spec.retry.backoff))
    return min(base * (1 << (failed_attempt - 1)), MAX_RETRY_BACKOFF)


def _event(execution: Execution, now: datetime) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=execution.id,
        namespace=execution.namespace,
        workflow=execution.workflow,
        state=execution.state,
        at=now,
        error=execution.error,
    )


class _Run:
    """Mutable working copy of one transition; produces a frozen Execution at the end."""

    def __init__(self, execution: Execution, workflow: Workflow, now: datetime) -> None:
        self.base = execution
        self.workflow = workflow
        self.now = now
        self.steps = list(execution.steps)
        self.error = execution.error
        self.state: ExecutionState = execution.state
        self.alert = execution.alert
        self.specs = {s.name: s for s in [*workflow.spec.steps, *workflow.spec.on_failure]}
        self.events: list[ExecutionEvent] = []
        self.cancellations: list[Cancellation] = []
        # Requests rendered when their step started here: dispatched as they are.
        self.requests: dict[str, StepRequest] = {}

    def snapshot(self) -> Execution:
        return self.base.model_copy(
            update={
                "steps": list(self.steps),
                "error": self.error,
                "state": self.state,
                "alert": self.alert,
            }
        )

    def index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.name == name)

    def finish_step(self, index: int, *, state: str, **update: object) -> None:
        """End the current attempt; a failed one with retries left waits for the next."""
        record = self.steps[index]
        spec = self.specs.get(record.name)
        failed = state not in ("succeeded", "skipped", "cancelled")
        if failed and spec is not None and spec.retry and record.attempt < spec.retry.attempts:
            self.steps[index] = record.model_copy(
                update={
                    **update,
                    "state": "pending",
                    "deadline_at": None,
                    "not_before": self.now + retry_backoff(spec, record.attempt),
                    "finished_at": None,
                }
            )
            return
        record = record.model_copy(
            update={
                "finished_at": self.now,
                **update,
                "state": state,
                "deadline_at": None,
                "not_before": None,
            }
        )
        self.steps[index] = record
        tolerated = spec is not None and spec.continue_on_error
        if failed and not tolerated and not record.on_failure and self.error is None:
            detail = f": {record.error}" if record.error else ""
            self.error = f"step {record.name} {record.state}{detail}"

    def start(self, index: int) -> None:
        """Start pending step `index`: skip, evaluate, wait, or mark running for a worker."""
        record = self.steps[index]
        spec = self.specs.get(record.name)
        if spec is None:
            self.finish_step(index, state="failed", error="step is no longer in the workflow")
            return
        attempt = record.attempt + 1
        started = {"attempt": attempt, "started_at": self.now, "not_before": None}
        try:
            needs_context = spec.when is not None or spec.kind in ("condition", "wait")
            context = execution_context(self.snapshot(), self.workflow) if needs_context else {}
            if spec.when is not None and not evaluate_bool(spec.when, context):
                self.finish_step(index, state="skipped")
                return
            if spec.condition is not None:
                result = evaluate_bool(spec.condition, context)
                self.steps[index] = record.model_copy(update=started)
                self.finish_step(index, state="succeeded", output={"result": result})
                return
            if spec.wait is not None:
                end = self.now + timedelta(seconds=parse_duration(spec.wait.duration))
                self.steps[index] = record.model_copy(
                    update={**started, "state": "running", "deadline_at": end}
                )
                self.check_wait(index, context)
                return
            deadline = self.now + timedelta(seconds=step_timeout_seconds(spec)) + WORKER_GRACE
            self.steps[index] = record.model_copy(
                update={**started, "state": "running", "deadline_at": deadline}
            )
            # Rendered now, from the document as it will be saved (nothing after a running
            # step changes in this transition), so a template error fails the step here,
            # not in a worker, and the request is rendered once.
            self.requests[record.name] = build_request(
                spec, self.snapshot(), self.workflow, attempt=attempt
            )
        except VigilError as exc:
            self.steps[index] = record.model_copy(update=started)
            self.finish_step(index, state="failed", error=str(exc))

    def check_wait(self, index: int, context: dict[str, object] | None = None) -> None:
        """End a running wait whose `until` holds now."""
        record = self.steps[index]
        spec = self.specs.get(record.name)
        # The workflow may have changed under a running wait: no `until` then, only its end.
        if spec is None or spec.wait is None or spec.wait.until is None:
            return
        context = context or execution_context(self.snapshot(), self.workflow)
        try:
            holds = evaluate_bool(spec.wait.until, context)
        except VigilError as exc:
            self.finish_step(index, state="failed", error=str(exc))
            return
        if holds:
            self.finish_wait(index, until=True)

    def finish_wait(self, index: int, *, until: bool) -> None:
        started = self.steps[index].started_at or self.now
        waited = round((self.now - started).total_seconds(), 3)
        self.finish_step(index, state="succeeded", output={"until": until, "waitedSeconds": waited})

    def interrupt(self, index: int, *, state: str, error: str) -> None:
        """End a running step from outside (timeout, cancel); tell its worker to stop."""
        record = self.steps[index]
        spec = self.specs.get(record.name)
        if spec is not None and spec.kind in WORKER_KINDS:
            self.cancellations.append(
                Cancellation(execution_id=self.base.id, step=record.name, attempt=record.attempt)
            )
        self.finish_step(index, state=state, error=error)

    def terminate(self, *, state: ExecutionState, error: str) -> None:
        """Stop everything: running steps are cancelled, the rest skipped."""
        for index, record in enumerate(self.steps):
            if record.state == "running":
                self.interrupt(index, state="cancelled", error=error)
            elif record.state == "pending":
                self.steps[index] = record.model_copy(
                    update={"state": "skipped", "not_before": None}
                )
        self.state = state
        self.error = error

    def wake_at(self, execution: Execution) -> datetime | None:
        if execution.finished:
            return None
        times = [execution.deadline_at]
        for record in execution.steps:
            times.append(record.deadline_at if record.state == "running" else None)
            times.append(record.not_before if record.state == "pending" else None)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def proceed(self) -> None:
        """Run steps in order until one must wait (for a worker, a timer) or none is left."""
        if self.state == "pending":
            self.state = "running"
            self.events.append(_event(self.snapshot(), self.now))
        waiting = False
        for on_failure_phase in (False, True):
            for index, record in enumerate(self.steps):
                if record.on_failure != on_failure_phase or record.state in FINAL_STEP_STATES:
                    continue
                if record.state == "running":
                    waiting = True
                    break
                if (self.error is not None) != on_failure_phase:
                    # Main steps after a failure, or onFailure steps when nothing failed.
                    self.steps[index] = record.model_copy(update={"state": "skipped"})
                    continue
                if record.not_before is not None and record.not_before > self.now:
                    waiting = True  # retry backoff
                    break
                self.start(index)
                if self.steps[index].state in ("running", "pending"):
                    waiting = True
                    break
            if waiting:
                break
        if not waiting:
            self.state = "failed" if self.error is not None else "succeeded"

    def transition(self) -> Transition:
        updated = self.snapshot()
        if updated.finished and not self.base.finished:
            updated = updated.model_copy(update={"finished_at": self.now})
            self.events.append(_event(updated, self.now))
        updated = updated.model_copy(update={"wake_at": self.wake_at(updated)})
        changed = updated != self.base
        if changed:
            updated = updated.model_copy(update={"updated_at": self.now})
        return Transition(
            execution=updated,
            changed=changed,
            dispatch=dispatches(updated, self.workflow, rendered=self.requests),
            events=self.events,
            cancellations=self.cancellations,
        )


def _unchanged(execution: Execution, workflow: Workflow) -> Transition:
    """Nothing new: but re-publish what the document implies (same message ids, so
    deduplicated), in case a crash or a failed publish came between save and publish."""
    return Transition(
        execution=execution,
        changed=False,
        dispatch=dispatches(execution, workflow),
        events=[] if execution.state == "pending" else [_event(execution, execution.updated_at)],
    )


def advance(execution: Execution, workflow: Workflow, *, now: datetime) -> Transition:
    """Move `execution` as far as the engine can without waiting for a worker."""
    if execution.finished:
        return _unchanged(execution, workflow)
    run = _Run(execution, workflow, now)
    run.proceed()
    return run.transition()


def apply_result(
    execution: Execution, workflow: Workflow, result: StepResult, *, now: datetime
) -> Transition:
    """Record `result` and advance; a stale or repeated result changes nothing."""
    if execution.finished:
        return _unchanged(execution, workflow)
    try:
        record = execution.step(result.step)
    except KeyError:
        return _unchanged(execution, workflow)
    if record.state != "running" or record.attempt != result.attempt:
        return _unchanged(execution, workflow)
    run = _Run(execution, workflow, now)
    index = run.index(result.step)
    run.finish_step(
        index,
        state=result.outcome,
        output=result.output,
        error=result.error,
        started_at=result.started_at,
    )
    if run.steps[index].state != "pending":
        run.steps[index] = run.steps[index].model_copy(update={"finished_at": result.finished_at})
    run.proceed()
    return run.transition()


def on_timer(execution: Execution, workflow: Workflow, *, now: datetime) -> Transition:
    """Handle what fell due: the workflow timeout, step deadlines, waits, retry times."""
    if execution.finished:
        return _unchanged(execution, workflow)
    run = _Run(execution, workflow, now)
    if execution.deadline_at is not None and execution.deadline_at <= now:
        timeout = workflow.spec.timeout or "its deadline"
        run.terminate(state="timed_out", error=f"workflow timed out after {timeout}")
        return run.transition()
    for index, record in enumerate(run.steps):
        if record.state != "running" or record.deadline_at is None or record.deadline_at > now:
            continue
        if record.kind == "wait":
            run.finish_wait(index, until=False)
        else:
            limit = (record.deadline_at - (record.started_at or now)).total_seconds()
            run.interrupt(index, state="timed_out", error=f"no result within {limit:g}s")
    run.proceed()
    return run.transition()


def alert_changed(
    execution: Execution, workflow: Workflow, alert: Alert, *, now: datetime
) -> Transition:
    """The execution's alert changed (e.g. resolved): follow it and re-check waits."""
    if execution.finished or alert == execution.alert:
        return _unchanged(execution, workflow)
    run = _Run(execution, workflow, now)
    run.alert = alert
    for index, record in enumerate(run.steps):
        if record.state == "running" and record.kind == "wait":
            run.check_wait(index)
    run.proceed()
    return run.transition()


def cancel(execution: Execution, workflow: Workflow, *, reason: str, now: datetime) -> Transition:
    """Stop the execution: its running step is cancelled and nothing further runs."""
    if execution.finished:
        return _unchanged(execution, workflow)
    run = _Run(execution, workflow, now)
    run.terminate(state="cancelled", error=reason)
    return run.transition()


def abandon(execution: Execution, *, reason: str, now: datetime) -> Transition:
    """Fail an execution whose workflow no longer exists (nothing else can run it)."""
    if execution.finished:
        return Transition(execution=execution, changed=False)
    steps = [
        step.model_copy(
            update={
                "state": "cancelled" if step.state == "running" else "skipped",
                "deadline_at": None,
                "not_before": None,
            }
        )
        if step.state in ("running", "pending")
        else step
        for step in execution.steps
    ]
    updated = execution.model_copy(
        update={
            "steps": steps,
            "state": "failed",
            "error": reason,
            "finished_at": now,
            "updated_at": now,
            "wake_at": None,
        }
    )
    cancellations = [
        Cancellation(execution_id=execution.id, step=step.name, attempt=step.attempt)
        for step in execution.steps
        if step.state == "running" and step.kind in WORKER_KINDS
    ]
    return Transition(
        execution=updated,
        changed=True,
        events=[_event(updated, now)],
        cancellations=cancellations,
    )
