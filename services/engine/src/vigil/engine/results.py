"""Results: what workers report back (`RESULTS`), and step requests nobody could run (`DLQ`).

A batch of results costs one read, one compare-and-set transaction and one pipelined
publish (`vigil.engine.domain.batching`). A result whose execution another writer changed
meanwhile, or whose workflow is missing, is applied on its own (`on_result`), which
reloads and retries. A dead-lettered step request becomes a failed result, so its step
fails with the reason instead of hanging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from pydantic import ValidationError

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution
from vigil.common.errors import PermanentError, VigilError
from vigil.common.messages import DeadLetter, StepRequest, StepResult
from vigil.common.resources import Workflow
from vigil.common.store import ExecutionStore
from vigil.engine.domain.batching import plan_results
from vigil.engine.domain.machine import apply_result
from vigil.engine.progress import Progress, workflow_or_abandon

log = structlog.get_logger(__name__)

type Outcomes = list[BaseException | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Results:
    store: ExecutionStore
    progress: Progress
    definitions: DefinitionsView
    clock: Clock = SYSTEM_CLOCK

    async def on_result(self, result: StepResult, delivery: Delivery) -> None:
        """Apply one result with compare-and-set (reloading on a lost race)."""
        structlog.contextvars.bind_contextvars(
            execution_id=result.execution_id, step=result.step, attempt=result.attempt
        )
        execution = await self.store.get_execution(result.execution_id)
        if execution is None:
            msg = f"result for unknown execution {result.execution_id}"
            raise PermanentError(msg)
        now = self.clock.now()
        workflow = await workflow_or_abandon(self.progress, self.definitions, execution, now=now)
        if workflow is not None:
            transform = partial(apply_result, workflow=workflow, result=result, now=now)
            await self.progress.apply(execution, transform)

    async def on_results(self, batch: Sequence[tuple[StepResult, Delivery]]) -> Outcomes:
        """Apply a batch of results: one read, one compare-and-set transaction, one publish.

        Returns one outcome per result: None, or the error that settles that result alone.
        """
        results = [result for result, _ in batch]
        executions = await self.store.get_executions([r.execution_id for r in results])
        plan = plan_results(results, executions, self._loaded_workflow, now=self.clock.now())
        lost = plan.lost(await self.store.update_executions(plan.writes()))
        await self.progress.publish_all(plan.to_publish(lost))
        outcomes: Outcomes = [plan.errors.get(index) for index in range(len(batch))]
        for index in plan.retry_one_by_one(lost):
            try:
                await self.on_result(*batch[index])
            except VigilError as exc:
                outcomes[index] = exc
        return outcomes

    def _loaded_workflow(self, execution: Execution) -> Workflow | None:
        return self.definitions.workflow(execution.namespace, execution.workflow)

    async def on_dead_letter(self, letter: DeadLetter, delivery: Delivery) -> None:
        """A step request nobody could run: its step fails with the reason, not hangs."""
        try:
            request = StepRequest.model_validate_json(letter.data)
        except ValidationError:
            log.error("dead_letter_not_a_step", subject=letter.subject, reason=letter.reason)
            return
        now = self.clock.now()
        failure = StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            outcome="failed",
            error=f"dead-lettered after {letter.deliveries} deliveries: {letter.reason}",
            started_at=now,
            finished_at=now,
        )
        log.warning(
            "step_dead_lettered",
            execution_id=request.execution_id,
            step=request.step,
            reason=letter.reason,
        )
        await self.on_result(failure, delivery)
