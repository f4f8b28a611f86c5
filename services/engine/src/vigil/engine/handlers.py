"""Engine handlers: one per subject. Decode, bind context, run the use case, save with
compare-and-set, then publish what the transition asks for (`vigil.engine.progress`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from prometheus_client import Counter
from pydantic import ValidationError
from ulid import ULID

from vigil.common.adapters.jetstream import Delivery
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import AlertRecord, Execution, ExecutionFilter
from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError, TransientError, VigilError
from vigil.common.history import is_newest
from vigil.common.messages import (
    AlertReceived,
    CancelRequested,
    DeadLetter,
    RunRequested,
    StepRequest,
    StepResult,
)
from vigil.common.resources import Workflow
from vigil.common.store import Store
from vigil.common.telemetry import current_trace_id
from vigil.common.templating import render
from vigil.engine.domain.context import alert_context
from vigil.engine.domain.machine import (
    Transition,
    abandon,
    advance,
    alert_changed,
    apply_result,
    cancel,
    new_execution,
)
from vigil.engine.domain.matching import match, trigger_key
from vigil.engine.progress import Progress

log = structlog.get_logger(__name__)

ALERTS_RECORDED = Counter("vigil_alerts_recorded_total", "Alerts recorded by the engine.")
EXECUTIONS_STARTED = Counter("vigil_executions_started_total", "Executions created.")
EXECUTIONS_SUPPRESSED = Counter(
    "vigil_executions_suppressed_total",
    "Matches that started no execution (concurrency policy, cooldown).",
    ["reason"],
)


# A workflow an alert matched: (index of the alert in its batch, workflow, alert).
type Matched = tuple[int, Workflow, AlertReceived]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineHandlers:
    store: Store
    progress: Progress
    definitions: DefinitionsView
    clock: Callable[[], datetime] = _utcnow

    async def _workflow(self, execution: Execution) -> Workflow | None:
        """The execution's workflow; None (and the execution failed) if it was deleted."""
        workflow = self.definitions.workflow(execution.namespace, execution.workflow)
        if workflow is not None:
            return workflow
        if not self.definitions.ready.is_set():
            msg = f"workflow {execution.namespace}/{execution.workflow} is not loaded yet"
            raise TransientError(msg, retry_after=2.0)
        reason = f"workflow {execution.namespace}/{execution.workflow} no longer exists"
        await self.progress.apply(execution, partial(abandon, reason=reason, now=self.clock()))
        return None

    # --- alerts --------------------------------------------------------------------------

    async def on_alerts(
        self, batch: Sequence[tuple[AlertReceived, Delivery]]
    ) -> list[BaseException | None]:
        """Record a batch of alerts and start what they match, in few round trips.

        One store transaction records every alert; new executions of `Allow` workflows are
        created already advanced in a second one, and their requests and events go out in
        one pipelined publish. Everything else (a repeat sighting to follow, a policy or
        cooldown to check, a trigger key that exists) takes the one-by-one path.
        """
        outcomes: list[BaseException | None] = [None] * len(batch)
        ready: list[int] = []
        for index, (received, _) in enumerate(batch):
            if self.definitions.source(received.namespace, received.source) is None:
                # Ingest only accepts alerts of known sources, so the definitions are on
                # their way through the KV watch: retry shortly, do not match against nothing.
                outcomes[index] = TransientError(
                    f"source {received.namespace}/{received.source} not loaded yet",
                    retry_after=1.0,
                )
            else:
                ready.append(index)
        records = await self.store.record_alerts([batch[i][0] for i in ready])
        ALERTS_RECORDED.inc(len(records))
        quick, one_by_one = await self._triage(
            [
                (index, batch[index][0], record)
                for index, record in zip(ready, records, strict=True)
            ],
            outcomes,
        )
        one_by_one += await self._start_many(quick, outcomes)
        for index, workflow, received in one_by_one:
            if outcomes[index] is not None:
                continue
            try:
                await self._start(workflow, received)
            except Exception as exc:  # noqa: BLE001 - settles this alert alone, not the batch
                outcomes[index] = exc
        await self._follow_repeats([batch[i][0] for i in ready], records, outcomes)
        return outcomes

    async def _follow_repeats(
        self,
        received: list[AlertReceived],
        records: list[AlertRecord],
        outcomes: list[BaseException | None],
    ) -> None:
        """An alert seen twice in one batch (fired, then resolved): the executions just
        created for its first sighting follow the newest one too."""
        newest: dict[str, AlertReceived] = {}
        seen: dict[str, int] = {}
        for item, record in zip(received, records, strict=True):
            seen[record.id] = seen.get(record.id, 0) + 1
            if is_newest(record, item):
                newest[record.id] = item
        for alert_id, count in seen.items():
            if count > 1 and alert_id in newest:
                try:
                    await self._follow_alert(alert_id, newest[alert_id])
                except VigilError as exc:
                    log.warning("follow_alert_failed", alert_id=alert_id, error=str(exc))

    async def _triage(
        self,
        recorded: list[tuple[int, AlertReceived, AlertRecord]],
        outcomes: list[BaseException | None],
    ) -> tuple[list[Matched], list[Matched]]:
        """Follow repeat sightings; split matches into batchable ones and the rest."""
        quick: list[Matched] = []
        one_by_one: list[Matched] = []
        for index, received, record in recorded:
            try:
                # A first sighting has no executions to follow it yet; an older notification
                # arriving late must not roll running executions back.
                if record.occurrences > 1 and is_newest(record, received):
                    await self._follow_alert(record.id, received)
            except Exception as exc:  # noqa: BLE001 - settles this alert alone, not the batch
                outcomes[index] = exc
                continue
            for workflow in self.definitions.workflows(received.namespace):
                verdict = match(workflow, received)
                if not verdict.matched:
                    log.debug("workflow_not_matched", workflow=workflow.ref, reason=verdict.reason)
                elif workflow.spec.cooldown or workflow.spec.concurrency.policy != "Allow":
                    one_by_one.append((index, workflow, received))
                else:
                    quick.append((index, workflow, received))
        return quick, one_by_one

    async def _start_many(
        self, matches: list[Matched], outcomes: list[BaseException | None]
    ) -> list[Matched]:
        """Create executions in one transaction; return the matches whose key existed."""
        prepared: list[tuple[Matched, Transition]] = []
        now = self.clock()
        for item in matches:
            index, workflow, received = item
            try:
                execution = self._new_execution(workflow, received, trigger_key(workflow, received))
                prepared.append((item, advance(execution, workflow, now=now)))
            except Exception as exc:  # noqa: BLE001 - settles this alert alone, not the batch
                outcomes[index] = exc
        inserted = await self.store.insert_executions([t.execution for _, t in prepared])
        started = [t for (_, t), new in zip(prepared, inserted, strict=True) if new]
        EXECUTIONS_STARTED.inc(len(started))
        for transition in started:
            log.info(
                "execution_created",
                execution_id=transition.execution.id,
                workflow=f"{transition.execution.namespace}/{transition.execution.workflow}",
            )
        await self.progress.publish_all(started)
        return [item for (item, _), new in zip(prepared, inserted, strict=True) if not new]

    async def _follow_alert(self, alert_id: str, received: AlertReceived) -> None:
        """Running executions of this alert see its new state (waits may end)."""
        running = await self.store.list_executions(
            ExecutionFilter(alert_id=alert_id, active=True), limit=100
        )
        now = self.clock()
        for execution in running.items:
            if execution.alert.starts_at > received.alert.starts_at:
                continue  # a newer occurrence already started it; this one is older
            workflow = self.definitions.workflow(execution.namespace, execution.workflow)
            if workflow is not None:
                await self.progress.apply(
                    execution,
                    partial(alert_changed, workflow=workflow, alert=received.alert, now=now),
                )

    async def _start(self, workflow: Workflow, received: AlertReceived) -> None:
        """Create the execution of this occurrence, or resume it if it exists (redelivery)."""
        key = trigger_key(workflow, received)
        spec = workflow.spec
        if spec.cooldown or spec.concurrency.policy != "Allow":
            # Policies look at other executions: a redelivered alert must find its own
            # execution first, not be suppressed by it.
            existing = await self.store.find_by_trigger_key(key)
            if existing is not None:
                await self._resume(existing, workflow)
                return
        if not await self._create(workflow, received, key):
            existing = await self.store.find_by_trigger_key(key)
            if existing is None:
                msg = f"trigger key {key} exists but its execution cannot be read"
                raise TransientError(msg)
            await self._resume(existing, workflow)

    async def _resume(self, execution: Execution, workflow: Workflow) -> None:
        log.info("execution_exists", execution_id=execution.id, workflow=workflow.ref)
        await self.progress.apply(execution, partial(advance, workflow=workflow, now=self.clock()))

    def _new_execution(
        self,
        workflow: Workflow,
        received: AlertReceived,
        key: str,
        concurrency_key: str | None = None,
    ) -> Execution:
        if concurrency_key is None:
            concurrency_key = self._concurrency_key(workflow, received)
        return new_execution(
            execution_id=str(ULID()),
            workflow=workflow,
            received=received,
            trigger_key=key,
            concurrency_key=concurrency_key,
            now=self.clock(),
            trace_id=current_trace_id(),
        )

    @staticmethod
    def _concurrency_key(workflow: Workflow, received: AlertReceived) -> str:
        template = workflow.spec.concurrency.key
        if template is None:
            return received.alert.fingerprint
        return render(template, alert_context(received, workflow))

    async def _create(self, workflow: Workflow, received: AlertReceived, key: str) -> bool:
        """Create and start the execution unless a policy suppresses it.

        Returns False if the trigger key already exists. The execution is inserted already
        advanced (first steps evaluated or dispatched): one write instead of two.
        """
        spec = workflow.spec
        concurrency_key = self._concurrency_key(workflow, received)
        same_key = ExecutionFilter(
            namespace=workflow.metadata.namespace,
            workflow=workflow.metadata.name,
            concurrency_key=concurrency_key,
        )
        if spec.cooldown:
            last = await self.store.list_executions(same_key, limit=1)
            cooldown = timedelta(seconds=parse_duration(spec.cooldown))
            if last.items and last.items[0].created_at + cooldown > received.received_at:
                EXECUTIONS_SUPPRESSED.labels(reason="cooldown").inc()
                log.info("execution_in_cooldown", workflow=workflow.ref, key=concurrency_key)
                return True
        policy = spec.concurrency.policy
        if policy != "Allow":
            active = await self.store.list_executions(
                same_key.model_copy(update={"active": True}), limit=10
            )
            if active.items and policy == "Forbid":
                EXECUTIONS_SUPPRESSED.labels(reason="forbid").inc()
                log.info(
                    "execution_forbidden",
                    workflow=workflow.ref,
                    key=concurrency_key,
                    running=active.items[0].id,
                )
                return True
            for running in active.items:  # Replace
                await self.progress.apply(
                    running,
                    lambda e: cancel(
                        e, workflow, reason="replaced by a newer alert", now=self.clock()
                    ),
                )
        execution = self._new_execution(workflow, received, key, concurrency_key)
        if policy != "Allow":
            execution = execution.model_copy(
                update={"exclusive_key": f"{workflow.ref}/{concurrency_key}"}
            )
        transition = advance(execution, workflow, now=self.clock())
        # A Conflict (another replica took the concurrency key meanwhile) is transient:
        # the redelivered alert then finds that execution and obeys the policy.
        if not await self.store.insert_execution(transition.execution):
            return False
        EXECUTIONS_STARTED.inc()
        log.info("execution_created", execution_id=execution.id, workflow=workflow.ref)
        await self.progress.publish(transition)
        return True

    # --- results, dead letters -----------------------------------------------------------

    async def on_result(self, result: StepResult, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=result.execution_id, step=result.step, attempt=result.attempt
        )
        execution = await self.store.get_execution(result.execution_id)
        if execution is None:
            msg = f"result for unknown execution {result.execution_id}"
            raise PermanentError(msg)
        workflow = await self._workflow(execution)
        if workflow is not None:
            transform = partial(apply_result, workflow=workflow, result=result, now=self.clock())
            await self.progress.apply(execution, transform)

    async def on_results(
        self, batch: Sequence[tuple[StepResult, Delivery]]
    ) -> list[BaseException | None]:
        """Apply a batch of results: one read, one compare-and-set transaction, one publish.

        Results of one execution are applied in order on top of each other. An execution
        another writer changed meanwhile, or whose workflow is missing, takes the
        one-by-one path (`on_result`), which reloads and retries.
        """
        outcomes: list[BaseException | None] = [None] * len(batch)
        executions = await self.store.get_executions([r.execution_id for r, _ in batch])
        loaded = {eid: e.version for eid, e in executions.items()}
        applied: dict[str, list[tuple[int, Transition]]] = {}
        one_by_one: list[int] = []
        now = self.clock()
        for index, (result, _) in enumerate(batch):
            execution = executions.get(result.execution_id)
            workflow = (
                None
                if execution is None
                else self.definitions.workflow(execution.namespace, execution.workflow)
            )
            if execution is None or workflow is None:
                one_by_one.append(index)
                continue
            try:
                transition = apply_result(execution, workflow, result, now=now)
            except VigilError as exc:
                outcomes[index] = exc
                continue
            if transition.changed:
                # One write per execution, however many of its results are in the batch.
                executions[result.execution_id] = transition.execution.model_copy(
                    update={"version": loaded[result.execution_id] + 1}
                )
            applied.setdefault(result.execution_id, []).append((index, transition))
        changed = [eid for eid, steps in applied.items() if any(t.changed for _, t in steps)]
        saved = await self.store.update_executions(
            [(executions[eid], loaded[eid]) for eid in changed]
        )
        lost = {eid for eid, ok in zip(changed, saved, strict=True) if not ok}
        published: list[Transition] = []
        for eid, steps in applied.items():
            if eid in lost:
                one_by_one += [index for index, _ in steps]
                continue
            final = steps[-1][1]
            published += [
                Transition(
                    execution=executions[eid],
                    changed=transition.changed,
                    # Only the last state's requests: an earlier one may be done already.
                    dispatch=final.dispatch if transition is final else [],
                    events=transition.events,
                    cancellations=transition.cancellations,
                )
                for _, transition in steps
            ]
        await self.progress.publish_all(published)
        for index in sorted(one_by_one):
            result, delivery = batch[index]
            try:
                await self.on_result(result, delivery)
            except VigilError as exc:
                outcomes[index] = exc
        return outcomes

    async def on_dead_letter(self, letter: DeadLetter, delivery: Delivery) -> None:
        """A step request nobody could run: its step fails with the reason, not hangs."""
        try:
            request = StepRequest.model_validate_json(letter.data)
        except ValidationError:
            log.error("dead_letter_not_a_step", subject=letter.subject, reason=letter.reason)
            return
        now = self.clock()
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

    # --- operator commands ---------------------------------------------------------------

    async def on_cancel(self, command: CancelRequested, delivery: Delivery) -> None:
        execution = await self.store.get_execution(command.execution_id)
        if execution is None:
            log.warning("cancel_unknown_execution", execution_id=command.execution_id)
            return
        workflow = await self._workflow(execution)
        if workflow is not None:
            stop = partial(cancel, workflow=workflow, reason=command.reason, now=self.clock())
            await self.progress.apply(execution, stop)
        log.info("execution_cancel_requested", execution_id=execution.id)

    async def on_run(self, command: RunRequested, delivery: Delivery) -> None:
        workflow = self.definitions.workflow(command.namespace, command.workflow)
        if workflow is None:
            if not self.definitions.ready.is_set():
                raise TransientError("definitions not loaded yet", retry_after=1.0)
            msg = f"workflow {command.namespace}/{command.workflow} is not defined"
            raise PermanentError(msg)
        received = AlertReceived(
            namespace=command.namespace,
            source="manual",
            received_at=command.requested_at,
            alert=command.alert,
            group=command.group,
        )
        execution = await self.store.find_by_trigger_key(f"manual/{command.execution_id}")
        if execution is None:
            execution = new_execution(
                execution_id=command.execution_id,
                workflow=workflow,
                received=received,
                trigger_key=f"manual/{command.execution_id}",
                concurrency_key=command.alert.fingerprint,
                now=self.clock(),
                trace_id=current_trace_id(),
            )
            if await self.store.insert_execution(execution):
                EXECUTIONS_STARTED.inc()
                log.info("execution_created", execution_id=execution.id, manual=True)
        await self.progress.apply(execution, lambda e: advance(e, workflow, now=self.clock()))
