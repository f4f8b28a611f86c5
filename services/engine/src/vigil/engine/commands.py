"""Operator commands from the API (`CONTROL`): cancel an execution, run a workflow by hand.

The API runs on ingest, but the engine is the single writer of executions, so these come
as commands. A manual run's execution id is chosen by the API (it answers with it), and
its trigger key is derived from that id: a redelivered command resumes the same execution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import structlog

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import AlertReceived, CancelRequested, RunRequested
from vigil.common.store import ExecutionStore
from vigil.common.telemetry import current_trace_id, traceparent_of
from vigil.engine.domain.machine import advance, cancel, new_execution
from vigil.engine.progress import Progress, count_started, workflow_or_abandon

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Commands:
    store: ExecutionStore
    progress: Progress
    definitions: DefinitionsView
    clock: Clock = SYSTEM_CLOCK

    async def on_cancel(self, command: CancelRequested, delivery: Delivery) -> None:
        execution = await self.store.get_execution(command.execution_id)
        if execution is None:
            log.warning("cancel_unknown_execution", execution_id=command.execution_id)
            return
        now = self.clock.now()
        workflow = await workflow_or_abandon(self.progress, self.definitions, execution, now=now)
        if workflow is not None:
            stop = partial(cancel, workflow=workflow, reason=command.reason, now=now)
            await self.progress.apply(execution, stop)
        log.info("execution_cancel_requested", execution_id=execution.id)

    async def on_run(self, command: RunRequested, delivery: Delivery) -> None:
        workflow = self.definitions.workflow(command.namespace, command.workflow)
        if workflow is None:
            if not self.definitions.ready.is_set():
                raise TransientError("definitions not loaded yet", retry_after=1.0)
            msg = f"workflow {command.namespace}/{command.workflow} is not defined"
            raise PermanentError(msg)
        trigger_key = f"manual/{command.execution_id}"
        execution = await self.store.find_by_trigger_key(trigger_key)
        if execution is None:
            execution = new_execution(
                execution_id=command.execution_id,
                workflow=workflow,
                received=AlertReceived(
                    namespace=command.namespace,
                    source="manual",
                    received_at=command.requested_at,
                    alert=command.alert,
                    group=command.group,
                ),
                trigger_key=trigger_key,
                concurrency_key=command.alert.fingerprint,
                now=self.clock.now(),
                trace_id=current_trace_id(),
                trace_parent=traceparent_of(),
            )
            if await self.store.insert_execution(execution):
                count_started(execution)
                log.info("execution_created", execution_id=execution.id, manual=True)
        await self.progress.apply(
            execution, partial(advance, workflow=workflow, now=self.clock.now())
        )
