"""The execution state machine (DESIGN §4, §5): pure functions from state to state.

`advance` runs everything the engine evaluates itself (`when`, `condition`), starts the next
step that needs a worker (`cli`, `notify`), and finishes the execution when nothing is
left. `apply_result` records a worker's result, ignoring a stale or repeated one. Neither
does I/O: the handler persists the new execution with compare-and-set, then publishes the
requests and events the transition lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from vigil.common.documents import FINAL_STEP_STATES, Execution, StepRecord, alert_id
from vigil.common.durations import parse_duration
from vigil.common.errors import VigilError
from vigil.common.expressions import evaluate_bool
from vigil.common.messages import (
    AlertReceived,
    CliStep,
    ExecutionEvent,
    NotifyStep,
    StepRequest,
    StepResult,
)
from vigil.common.resources import Step, Workflow
from vigil.common.templating import render
from vigil.engine.domain.context import execution_context

DEFAULT_CLI_TIMEOUT_SECONDS = 300.0
DEFAULT_TITLE = "{{ alert.labels.alertname | default('alert') }} is {{ alert.status }}"
DEFAULT_MESSAGE = (
    "{{ alert.annotations.summary | default(alert.annotations.description | default('')) }}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    execution: Execution
    changed: bool
    dispatch: list[StepRequest] = field(default_factory=list)
    events: list[ExecutionEvent] = field(default_factory=list)


def new_execution(
    *,
    execution_id: str,
    workflow: Workflow,
    received: AlertReceived,
    trigger_key: str,
    concurrency_key: str,
    now: datetime,
    trace_id: str | None = None,
) -> Execution:
    spec = workflow.spec
    steps = [StepRecord(name=s.name, kind=s.kind) for s in spec.steps]
    steps += [StepRecord(name=s.name, kind=s.kind, on_failure=True) for s in spec.on_failure]
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
        steps=steps,
        trace_id=trace_id,
    )


def _specs(workflow: Workflow) -> dict[str, Step]:
    return {s.name: s for s in [*workflow.spec.steps, *workflow.spec.on_failure]}


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
        self.state = execution.state
        self.specs = _specs(workflow)

    def snapshot(self) -> Execution:
        return self.base.model_copy(
            update={"steps": list(self.steps), "error": self.error, "state": self.state}
        )

    def finish_step(self, index: int, **update: object) -> None:
        record = self.steps[index].model_copy(update={"finished_at": self.now, **update})
        self.steps[index] = record
        failed = record.state not in ("succeeded", "skipped")
        spec = self.specs.get(record.name)
        tolerated = spec is not None and spec.continue_on_error
        if failed and not tolerated and not record.on_failure and self.error is None:
            detail = f": {record.error}" if record.error else ""
            self.error = f"step {record.name} {record.state}{detail}"

    def start(self, index: int) -> None:
        """Start pending step `index`: skip, evaluate, or mark running for a worker."""
        record = self.steps[index]
        spec = self.specs.get(record.name)
        if spec is None:
            self.finish_step(index, state="failed", error="step is no longer in the workflow")
            return
        context = execution_context(self.snapshot(), self.workflow)
        try:
            if spec.when is not None and not evaluate_bool(spec.when, context):
                self.steps[index] = record.model_copy(
                    update={"state": "skipped", "finished_at": self.now}
                )
                return
            if spec.condition is not None:
                result = evaluate_bool(spec.condition, context)
                self.finish_step(
                    index, state="succeeded", output={"result": result}, started_at=self.now
                )
                return
            # Render now so a template error fails the step here, not in a worker.
            build_request(spec, self.snapshot(), self.workflow, attempt=record.attempt + 1)
        except VigilError as exc:
            self.finish_step(index, state="failed", error=str(exc), started_at=self.now)
            return
        self.steps[index] = record.model_copy(
            update={"state": "running", "attempt": record.attempt + 1, "started_at": self.now}
        )


def advance(execution: Execution, workflow: Workflow, *, now: datetime) -> Transition:
    """Move `execution` as far as the engine can without waiting for a worker."""
    if execution.finished:
        return Transition(execution=execution, changed=False)
    run = _Run(execution, workflow, now)
    events: list[ExecutionEvent] = []
    if run.state == "pending":
        run.state = "running"
        events.append(_event(run.snapshot(), now))

    waiting = False
    for on_failure_phase in (False, True):
        for index, record in enumerate(run.steps):
            if record.on_failure != on_failure_phase or record.state in FINAL_STEP_STATES:
                continue
            if record.state == "running":
                waiting = True
                break
            phase_active = (run.error is not None) == on_failure_phase
            if not phase_active:
                # Main steps after a failure, or onFailure steps when nothing failed.
                run.steps[index] = record.model_copy(update={"state": "skipped"})
                continue
            run.start(index)
            if run.steps[index].state == "running":
                waiting = True
                break
        if waiting:
            break

    if not waiting:
        run.state = "failed" if run.error is not None else "succeeded"
    updated = run.snapshot()
    if not waiting:
        updated = updated.model_copy(update={"finished_at": now})
        events.append(_event(updated, now))
    changed = updated != execution
    if changed:
        updated = updated.model_copy(update={"updated_at": now})
    return Transition(
        execution=updated,
        changed=changed,
        dispatch=dispatches(updated, workflow),
        events=events,
    )


def apply_result(
    execution: Execution, workflow: Workflow, result: StepResult, *, now: datetime
) -> Transition:
    """Record `result` and advance; a stale or repeated result changes nothing."""
    try:
        record = execution.step(result.step)
    except KeyError:
        return Transition(execution=execution, changed=False)
    if record.state != "running" or record.attempt != result.attempt:
        return Transition(
            execution=execution, changed=False, dispatch=dispatches(execution, workflow)
        )
    run = _Run(execution, workflow, now)
    index = execution.steps.index(record)
    run.finish_step(
        index,
        state=result.outcome,
        output=result.output,
        error=result.error,
        started_at=result.started_at,
    )
    run.steps[index] = run.steps[index].model_copy(update={"finished_at": result.finished_at})
    return advance(run.snapshot(), workflow, now=now)


def dispatches(execution: Execution, workflow: Workflow) -> list[StepRequest]:
    """Requests for every step a worker is running: (re)published after each save.

    Re-publishing is how a crash between saving and publishing heals: the request is the
    same, its `Nats-Msg-Id` is the same, and JetStream drops the duplicate.
    """
    if execution.finished:
        return []
    specs = _specs(workflow)
    requests = []
    for record in execution.steps:
        spec = specs.get(record.name)
        if record.state == "running" and spec is not None and spec.kind in ("cli", "notify"):
            requests.append(build_request(spec, execution, workflow, attempt=record.attempt))
    return requests


def request_id(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/{attempt}"


def build_request(
    spec: Step, execution: Execution, workflow: Workflow, *, attempt: int
) -> StepRequest:
    """Render the step's templates into a request; raises TemplateError."""
    context = execution_context(execution, workflow)
    key = request_id(execution.id, spec.name, attempt)
    cli = notify = None
    if spec.cli is not None:
        timeout = spec.cli.timeout or spec.timeout
        cli = CliStep(
            argv=[render(arg, context) for arg in spec.cli.command],
            timeout_seconds=parse_duration(timeout) if timeout else DEFAULT_CLI_TIMEOUT_SECONDS,
            env={name: render(value, context) for name, value in spec.cli.env.items()},
        )
    elif spec.notify is not None:
        notify = NotifyStep(
            sinks=list(spec.notify.sinks),
            title=render(spec.notify.title or DEFAULT_TITLE, context),
            message=render(spec.notify.message or DEFAULT_MESSAGE, context),
            alert=execution.alert,
        )
    else:
        msg = f"step {spec.name} of kind {spec.kind} is not run by a worker"
        raise ValueError(msg)
    return StepRequest(
        execution_id=execution.id,
        namespace=execution.namespace,
        workflow=execution.workflow,
        step=spec.name,
        attempt=attempt,
        idempotency_key=key,
        cli=cli,
        notify=notify,
    )
