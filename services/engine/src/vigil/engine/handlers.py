"""Engine handlers: one per subject. Decode, bind context, run the use case, persist with
compare-and-set, then publish what the transition asks for.

Publishing happens after the save and is repeated on every redelivery: requests carry a
deterministic `Nats-Msg-Id`, so a crash between the two is healed by the next delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter
from ulid import ULID

from vigil.common import subjects
from vigil.common.adapters.jetstream import Delivery, JetStreamBus, Outgoing
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution
from vigil.common.errors import Conflict, PermanentError, TransientError
from vigil.common.messages import AlertReceived, StepResult
from vigil.common.resources import Workflow
from vigil.common.store import Store
from vigil.common.telemetry import current_trace_id
from vigil.common.templating import render
from vigil.engine.domain.context import alert_context
from vigil.engine.domain.machine import (
    Transition,
    advance,
    apply_result,
    new_execution,
    request_id,
)
from vigil.engine.domain.matching import match, trigger_key

log = structlog.get_logger(__name__)

ALERTS_RECORDED = Counter("vigil_alerts_recorded_total", "Alerts recorded by the engine.")
EXECUTIONS_STARTED = Counter("vigil_executions_started_total", "Executions created.")
EXECUTIONS_FINISHED = Counter(
    "vigil_executions_finished_total", "Executions that reached a final state.", ["state"]
)
CAS_ATTEMPTS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineHandlers:
    store: Store
    bus: JetStreamBus
    definitions: DefinitionsView
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def on_alert(self, received: AlertReceived, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            namespace=received.namespace,
            source=received.source,
            fingerprint=received.alert.fingerprint,
        )
        if self.definitions.source(received.namespace, received.source) is None:
            # Ingest only accepts alerts of known sources, so the definitions are on their
            # way through the KV watch: retry shortly rather than match against nothing.
            msg = f"source {received.namespace}/{received.source} not loaded yet"
            raise TransientError(msg, retry_after=1.0)
        await self.store.record_alert(received)
        ALERTS_RECORDED.inc()
        for workflow in self.definitions.workflows(received.namespace):
            result = match(workflow, received)
            if not result.matched:
                log.debug("workflow_not_matched", workflow=workflow.ref, reason=result.reason)
                continue
            await self._start(workflow, received)

    async def _start(self, workflow: Workflow, received: AlertReceived) -> None:
        key = trigger_key(workflow, received)
        concurrency = workflow.spec.concurrency.key
        execution = new_execution(
            execution_id=str(ULID()),
            workflow=workflow,
            received=received,
            trigger_key=key,
            concurrency_key=(
                render(concurrency, alert_context(received, workflow))
                if concurrency
                else received.alert.fingerprint
            ),
            now=self.clock(),
            trace_id=current_trace_id(),
        )
        if await self.store.insert_execution(execution):
            EXECUTIONS_STARTED.inc()
            log.info("execution_created", execution_id=execution.id, workflow=workflow.ref)
        else:
            existing = await self.store.find_by_trigger_key(key)
            if existing is None:
                msg = f"trigger key {key} exists but its execution cannot be read"
                raise TransientError(msg)
            log.info("execution_exists", execution_id=existing.id, workflow=workflow.ref)
            execution = existing
        now = self.clock
        await self._progress(execution.id, execution, lambda e: advance(e, workflow, now=now()))

    async def on_result(self, result: StepResult, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=result.execution_id, step=result.step, attempt=result.attempt
        )
        execution = await self.store.get_execution(result.execution_id)
        if execution is None:
            msg = f"result for unknown execution {result.execution_id}"
            raise PermanentError(msg)
        workflow = self.definitions.workflow(execution.namespace, execution.workflow)
        if workflow is None:
            msg = f"workflow {execution.namespace}/{execution.workflow} is not loaded"
            raise TransientError(msg, retry_after=2.0)
        now = self.clock
        await self._progress(
            execution.id, execution, lambda e: apply_result(e, workflow, result, now=now())
        )

    async def _progress(
        self,
        execution_id: str,
        current: Execution,
        transform: Callable[[Execution], Transition],
    ) -> None:
        """Apply `transform` with compare-and-set, retrying on a lost race, then publish."""
        for _ in range(CAS_ATTEMPTS):
            transition = transform(current)
            if not transition.changed:
                break
            saved = transition.execution.model_copy(update={"version": current.version + 1})
            try:
                await self.store.update_execution(saved, expected_version=current.version)
            except Conflict:
                reloaded = await self.store.get_execution(execution_id)
                if reloaded is None:
                    raise
                current = reloaded
                continue
            transition = Transition(
                execution=saved,
                changed=True,
                dispatch=transition.dispatch,
                events=transition.events,
            )
            break
        else:
            msg = f"execution {execution_id}: compare-and-set lost {CAS_ATTEMPTS} times"
            raise Conflict(msg)
        await self._publish(transition)

    async def _publish(self, transition: Transition) -> None:
        outgoing = [
            Outgoing(
                subject=subjects.steps(request.kind),
                message=request,
                msg_id=request_id(request.execution_id, request.step, request.attempt),
            )
            for request in transition.dispatch
        ]
        outgoing += [
            Outgoing(
                subject=subjects.events(event.namespace, event.workflow),
                message=event,
                msg_id=f"{event.execution_id}/state/{event.state}",
            )
            for event in transition.events
        ]
        if outgoing:
            await self.bus.publish_all(outgoing)
        for request in transition.dispatch:
            log.info(
                "step_dispatched",
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                kind=request.kind,
            )
        execution = transition.execution
        if transition.changed and execution.finished:
            EXECUTIONS_FINISHED.labels(state=execution.state).inc()
            log.info(
                "execution_finished",
                execution_id=execution.id,
                state=execution.state,
                error=execution.error,
            )
