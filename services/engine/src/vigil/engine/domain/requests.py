"""What the engine asks workers to do: step requests rendered from an execution.

Rendering is deterministic in the execution document, so a request can be rebuilt and
re-published after any crash; its `Nats-Msg-Id` (`{execution}/{step}/{attempt}`) lets
JetStream drop the duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.common.documents import Execution, StepRecord
from vigil.common.durations import parse_duration
from vigil.common.messages import (
    AgentStep,
    CliStep,
    Findings,
    NotifyStep,
    Output,
    StepRequest,
    StepSummary,
)
from vigil.common.resources import Step, Workflow
from vigil.common.templating import render
from vigil.engine.domain.context import execution_context

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
DEFAULT_TITLE = "{{ alert.labels.alertname | default('alert') }} is {{ alert.status }}"
DEFAULT_MESSAGE = (
    "{{ alert.annotations.summary | default(alert.annotations.description | default('')) }}"
)
WORKER_KINDS = frozenset({"cli", "notify", "agent"})
# What a notification carries of the other steps: enough to read, small on the bus.
SUMMARY_TEXT_LIMIT = 1500
ERROR_TEXT_LIMIT = 500
RECOMMENDATIONS_LIMIT = 8


def request_id(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/{attempt}"


def step_timeout_seconds(spec: Step) -> float:
    """The step's own time limit: its kind's `timeout`, else `timeout`, else the default."""
    own = spec.cli.timeout if spec.cli else spec.agent.timeout if spec.agent else None
    timeout = own or spec.timeout
    return parse_duration(timeout) if timeout else DEFAULT_STEP_TIMEOUT_SECONDS


def build_request(
    spec: Step, execution: Execution, workflow: Workflow, *, attempt: int
) -> StepRequest:
    """Render the step's templates into a request; raises TemplateError."""
    context = execution_context(execution, workflow)
    cli = notify = agent = None
    if spec.cli is not None:
        cli = CliStep(
            argv=[render(arg, context) for arg in spec.cli.command],
            timeout_seconds=step_timeout_seconds(spec),
            env={name: render(value, context) for name, value in spec.cli.env.items()},
            image=spec.cli.image,
            resources=spec.cli.resources.model_dump() if spec.cli.resources else {},
            service_account=workflow.spec.service_account_name,
        )
    elif spec.agent is not None:
        agent = AgentStep(
            goal=render(spec.agent.goal, context),
            tools=list(spec.agent.tools),
            max_iterations=spec.agent.max_iterations,
            max_tokens=spec.agent.max_tokens,
            timeout_seconds=step_timeout_seconds(spec),
            model=spec.agent.model,
            provider=spec.agent.provider,
            runbook_url=execution.alert.annotations.get("runbook_url"),
            output_schema=spec.agent.output_schema,
        )
    elif spec.notify is not None:
        notify = NotifyStep(
            sinks=list(spec.notify.sinks),
            title=render(spec.notify.title or DEFAULT_TITLE, context),
            message=render(spec.notify.message or DEFAULT_MESSAGE, context),
            alert=execution.alert,
            custom_title=spec.notify.title is not None,
            custom_message=spec.notify.message is not None,
            steps=step_summaries(execution, but=spec.name),
            trace_id=execution.trace_id,
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
        idempotency_key=request_id(execution.id, spec.name, attempt),
        cli=cli,
        notify=notify,
        agent=agent,
    )


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _findings(output: Output | None) -> Findings | None:
    """An agent answer's findings, bounded; None when the step has no answer."""
    summary = (output or {}).get("summary")
    if output is None or not isinstance(summary, str):
        return None
    root_cause = output.get("rootCause")
    recommendations = output.get("recommendations")
    confidence = output.get("confidence")
    return Findings(
        summary=_clipped(summary, SUMMARY_TEXT_LIMIT),
        root_cause=_clipped(root_cause, SUMMARY_TEXT_LIMIT) if isinstance(root_cause, str) else "",
        recommendations=[
            _clipped(item, ERROR_TEXT_LIMIT)
            for item in (recommendations if isinstance(recommendations, list) else [])
            if isinstance(item, str)
        ][:RECOMMENDATIONS_LIMIT],
        confidence=(
            float(confidence)
            if isinstance(confidence, int | float) and not isinstance(confidence, bool)
            else None
        ),
    )


def _summary(record: StepRecord) -> StepSummary:
    return StepSummary(
        name=record.name,
        kind=record.kind,
        state=record.state,
        attempt=record.attempt,
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=_clipped(record.error, ERROR_TEXT_LIMIT) if record.error else None,
        findings=_findings(record.output) if record.kind == "agent" else None,
    )


def step_summaries(execution: Execution, *, but: str) -> list[StepSummary]:
    """The execution's steps so far for a notification: every step that started or was
    skipped, in order, except the notify step `but` itself."""
    return [
        _summary(record)
        for record in execution.steps
        if record.name != but and record.state != "pending"
    ]


def dispatches(
    execution: Execution,
    workflow: Workflow,
    *,
    rendered: Mapping[str, StepRequest] | None = None,
) -> list[StepRequest]:
    """Requests for every step a worker is running: (re)published after each save.

    `rendered`: requests already built from this document (by step name), used as they are.
    """
    if execution.finished:
        return []
    specs = {s.name: s for s in [*workflow.spec.steps, *workflow.spec.on_failure]}
    requests = []
    for record in execution.steps:
        spec = specs.get(record.name)
        if record.state == "running" and spec is not None and spec.kind in WORKER_KINDS:
            request = (rendered or {}).get(record.name)
            if request is None or request.attempt != record.attempt:
                request = build_request(spec, execution, workflow, attempt=record.attempt)
            requests.append(request)
    return requests
