"""Saving a transition and publishing what it asks for, in that order.

Compare-and-set on the execution version: a lost race reloads and re-applies the transform.
After the save the dispatches, events and cancellations are published; every redelivery
publishes them again (same `Nats-Msg-Id`, deduplicated), which heals a crash in between.

Each step request goes out in a `dispatch` span of its execution's trace
(`vigil.common.telemetry.execution_context`): one publish may carry several alerts' work,
so every message carries its own `traceparent`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from prometheus_client import Counter

from vigil.common import subjects
from vigil.common.bus import Outgoing, Publisher
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution
from vigil.common.errors import Conflict, TransientError
from vigil.common.messages import StepCancelled
from vigil.common.resources import Workflow
from vigil.common.store import ExecutionStore
from vigil.common.telemetry import execution_context
from vigil.engine.domain.machine import Transition, abandon
from vigil.engine.domain.requests import request_id

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("vigil.engine")

# `workflow` is `namespace/name`: as many values as there are Workflows, a bounded set.
EXECUTIONS_STARTED = Counter(
    "vigil_executions_started_total", "Executions created, by workflow.", ["workflow"]
)
EXECUTIONS_FINISHED = Counter(
    "vigil_executions_finished_total",
    "Executions that reached a final state, by workflow and state.",
    ["workflow", "state"],
)


def count_started(execution: Execution) -> None:
    EXECUTIONS_STARTED.labels(workflow=f"{execution.namespace}/{execution.workflow}").inc()


CAS_ATTEMPTS = 8


class NotPublished(TransientError):
    """Saved, but what the transition asks for was not published. A message handler lets
    its message be redelivered (which re-publishes); the timer loop must arrange it."""

    def __init__(self, saved: Execution, reason: str) -> None:
        super().__init__(f"execution {saved.id} saved but not published: {reason}")
        self.saved = saved


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    store: ExecutionStore
    bus: Publisher

    async def apply(
        self, current: Execution, transform: Callable[[Execution], Transition]
    ) -> Execution:
        """Apply `transform` with compare-and-set, retrying on a lost race, then publish."""
        for _ in range(CAS_ATTEMPTS):
            transition = transform(current)
            if not transition.changed:
                await self.publish(transition)
                return current
            saved = transition.execution.model_copy(update={"version": current.version + 1})
            try:
                await self.store.update_execution(saved, expected_version=current.version)
            except Conflict:
                reloaded = await self.store.get_execution(current.id)
                if reloaded is None:
                    raise
                current = reloaded
                continue
            try:
                await self.publish(
                    Transition(
                        execution=saved,
                        changed=True,
                        dispatch=transition.dispatch,
                        events=transition.events,
                        cancellations=transition.cancellations,
                    )
                )
            except TransientError as exc:
                raise NotPublished(saved, str(exc)) from exc
            return saved
        msg = f"execution {current.id}: compare-and-set lost {CAS_ATTEMPTS} times"
        raise Conflict(msg)

    async def publish(self, transition: Transition) -> None:
        await self.publish_all([transition])

    async def publish_all(self, transitions: Sequence[Transition]) -> None:
        """What the transitions ask for, pipelined in one round of acknowledged publishes."""
        spans: list[trace.Span] = []
        outgoing: list[Outgoing] = []
        for transition in transitions:
            execution = transition.execution
            parent = execution_context(
                trace_id=execution.trace_id, traceparent=execution.trace_parent
            )
            for request in transition.dispatch:
                span = tracer.start_span(
                    f"dispatch {request.kind}",
                    context=parent,
                    kind=trace.SpanKind.PRODUCER,
                    attributes={
                        "vigil.execution.id": request.execution_id,
                        "vigil.step.name": request.step,
                        "vigil.step.attempt": request.attempt,
                    },
                )
                spans.append(span)
                outgoing.append(
                    Outgoing(
                        subject=subjects.steps(request.kind),
                        message=request,
                        msg_id=request_id(request.execution_id, request.step, request.attempt),
                        trace_headers=_headers(trace.set_span_in_context(span)),
                    )
                )
            outgoing += [
                Outgoing(
                    subject=subjects.events(event.namespace, event.workflow),
                    message=event,
                    msg_id=f"{event.execution_id}/state/{event.state}",
                    trace_headers=_headers(parent),
                )
                for event in transition.events
            ]
        try:
            if outgoing:
                await self.bus.publish_all(outgoing)
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
            raise
        finally:
            for span in spans:
                span.end()
        for transition in transitions:
            await self._announce_and_log(transition)

    async def _announce_and_log(self, transition: Transition) -> None:
        for cancellation in transition.cancellations:
            await self.bus.announce(
                subjects.step_cancellations(cancellation.execution_id),
                StepCancelled(
                    execution_id=cancellation.execution_id,
                    step=cancellation.step,
                    attempt=cancellation.attempt,
                ),
            )
        if not transition.changed:
            return
        execution = transition.execution
        # The execution's own trace id: a batch's span may belong to another alert's trace.
        traced = {"trace_id": execution.trace_id} if execution.trace_id else {}
        for request in transition.dispatch:
            log.info(
                "step_dispatched",
                **traced,
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                kind=request.kind,
            )
        if execution.finished:
            EXECUTIONS_FINISHED.labels(
                workflow=f"{execution.namespace}/{execution.workflow}", state=execution.state
            ).inc()
            log.info(
                "execution_finished",
                **traced,
                execution_id=execution.id,
                workflow=execution.workflow,
                state=execution.state,
                error=execution.error,
            )


def _headers(parent: Context) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=parent)
    return carrier


async def workflow_or_abandon(
    progress: Progress, definitions: DefinitionsView, execution: Execution, *, now: datetime
) -> Workflow | None:
    """The execution's workflow; None (and the execution failed) if it was deleted.

    Raises TransientError while the definitions are still loading.
    """
    workflow = definitions.workflow(execution.namespace, execution.workflow)
    if workflow is not None:
        return workflow
    if not definitions.ready.is_set():
        msg = f"workflow {execution.namespace}/{execution.workflow} is not loaded yet"
        raise TransientError(msg, retry_after=2.0)
    reason = f"workflow {execution.namespace}/{execution.workflow} no longer exists"
    await progress.apply(execution, partial(abandon, reason=reason, now=now))
    return None
