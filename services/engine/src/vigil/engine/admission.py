"""Admission: alerts in, executions out (the engine's `ALERTS` consumer).

A batch of alerts is recorded in one store transaction; repeat sightings let the running
executions of their alert follow it (waits re-check `until`); every workflow of the
namespace is matched. Executions of `Allow` workflows without cooldown are created already
advanced in a second transaction and their requests go out in one pipelined publish.
Guarded workflows (cooldown, `Forbid`, `Replace`) and trigger keys that already exist take
the one-by-one path, where `vigil.engine.domain.policy.admit` decides.

Every alert is admitted in a span of its own trace (parented by its message's
`traceparent`), whose context the executions it starts keep for their later spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import structlog
from opentelemetry import trace
from prometheus_client import Counter
from ulid import ULID

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import AlertRecord, Execution, ExecutionFilter
from vigil.common.errors import TransientError, VigilError
from vigil.common.history import is_newest
from vigil.common.messages import AlertReceived
from vigil.common.resources import Workflow
from vigil.common.store import AlertStore, ExecutionStore
from vigil.common.telemetry import message_context, traceparent_of
from vigil.engine.domain.machine import Transition, advance, alert_changed, cancel, new_execution
from vigil.engine.domain.matching import match, trigger_key
from vigil.engine.domain.policy import Replace, Suppress, admit, concurrency_key, is_guarded
from vigil.engine.progress import Progress, count_started

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("vigil.engine")

ALERTS_RECORDED = Counter("vigil_alerts_recorded_total", "Alerts recorded by the engine.")
EXECUTIONS_SUPPRESSED = Counter(
    "vigil_executions_suppressed_total",
    "Matches that started no execution (concurrency policy, cooldown).",
    ["reason"],
)
# How many unfinished executions of one concurrency key are looked at (and replaced).
UNFINISHED_LOOKED_AT = 10

# A workflow an alert matched: (index of the alert in its batch, workflow, alert).
type Matched = tuple[int, Workflow, AlertReceived]
type Outcomes = list[BaseException | None]


class AdmissionStore(AlertStore, ExecutionStore, Protocol):
    """What admission reads and writes: alert history and executions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    store: AdmissionStore
    progress: Progress
    definitions: DefinitionsView
    clock: Clock = SYSTEM_CLOCK

    async def on_alerts(self, batch: Sequence[tuple[AlertReceived, Delivery]]) -> Outcomes:
        """Record a batch of alerts and start what they match, in few round trips.

        Returns one outcome per alert: None, or the error that settles that alert alone.
        """
        spans = [
            tracer.start_span(
                "admit alert",
                context=message_context(delivery.headers),
                attributes={"vigil.alert.fingerprint": received.alert.fingerprint},
            )
            for received, delivery in batch
        ]
        outcomes: Outcomes = [None] * len(batch)
        try:
            outcomes = await self._admit(batch, spans)
        finally:
            for span, outcome in zip(spans, outcomes, strict=True):
                if outcome is not None:
                    span.set_status(trace.StatusCode.ERROR, str(outcome))
                span.end()
        return outcomes

    async def _admit(
        self, batch: Sequence[tuple[AlertReceived, Delivery]], spans: list[trace.Span]
    ) -> Outcomes:
        outcomes: Outcomes = [None] * len(batch)
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
        alerts = [batch[i][0] for i in ready]
        records = await self.store.record_alerts(alerts)
        ALERTS_RECORDED.inc(len(records))
        quick, one_by_one = await self._triage(
            list(zip(ready, alerts, records, strict=True)), outcomes
        )
        one_by_one += await self._start_many(quick, outcomes, spans)
        for index, workflow, received in one_by_one:
            if outcomes[index] is None:
                try:
                    await self._start(workflow, received, spans[index])
                except Exception as exc:  # noqa: BLE001 - settles this alert alone, not the batch
                    outcomes[index] = exc
        await self._follow_repeats(alerts, records)
        return outcomes

    async def _triage(
        self, recorded: list[tuple[int, AlertReceived, AlertRecord]], outcomes: Outcomes
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
                    continue
                (one_by_one if is_guarded(workflow) else quick).append((index, workflow, received))
        return quick, one_by_one

    async def _follow_repeats(
        self, received: list[AlertReceived], records: list[AlertRecord]
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

    async def _follow_alert(self, alert_id: str, received: AlertReceived) -> None:
        """Running executions of this alert see its new state (waits may end)."""
        running = await self.store.list_executions(
            ExecutionFilter(alert_id=alert_id, active=True), limit=100
        )
        now = self.clock.now()
        for execution in running.items:
            if execution.alert.starts_at > received.alert.starts_at:
                continue  # a newer occurrence already started it; this one is older
            workflow = self.definitions.workflow(execution.namespace, execution.workflow)
            if workflow is not None:
                await self.progress.apply(
                    execution,
                    partial(alert_changed, workflow=workflow, alert=received.alert, now=now),
                )

    async def _start_many(
        self, matches: list[Matched], outcomes: Outcomes, spans: list[trace.Span]
    ) -> list[Matched]:
        """Create executions in one transaction; return the matches whose key existed."""
        prepared: list[tuple[Matched, Transition]] = []
        now = self.clock.now()
        for item in matches:
            index, workflow, received = item
            try:
                key = concurrency_key(workflow, received)
                execution = self._new_execution(
                    workflow, received, concurrency_key=key, span=spans[index]
                )
                prepared.append((item, advance(execution, workflow, now=now)))
            except Exception as exc:  # noqa: BLE001 - settles this alert alone, not the batch
                outcomes[index] = exc
        inserted = await self.store.insert_executions([t.execution for _, t in prepared])
        started = [t for (_, t), new in zip(prepared, inserted, strict=True) if new]
        for transition in started:
            count_started(transition.execution)
            log.info(
                "execution_created",
                trace_id=transition.execution.trace_id,
                execution_id=transition.execution.id,
                workflow=f"{transition.execution.namespace}/{transition.execution.workflow}",
            )
        await self.progress.publish_all(started)
        return [item for (item, _), new in zip(prepared, inserted, strict=True) if not new]

    async def _start(self, workflow: Workflow, received: AlertReceived, span: trace.Span) -> None:
        """Create the execution of this occurrence, or resume it if it exists (redelivery)."""
        key = trigger_key(workflow, received)
        if is_guarded(workflow):
            # Policies look at other executions: a redelivered alert must find its own
            # execution first, not be suppressed by it.
            existing = await self.store.find_by_trigger_key(key)
            if existing is not None:
                await self._resume(existing, workflow)
                return
        if not await self._create(workflow, received, span):
            existing = await self.store.find_by_trigger_key(key)
            if existing is None:
                msg = f"trigger key {key} exists but its execution cannot be read"
                raise TransientError(msg)
            await self._resume(existing, workflow)

    async def _resume(self, execution: Execution, workflow: Workflow) -> None:
        log.info("execution_exists", execution_id=execution.id, workflow=workflow.ref)
        await self.progress.apply(
            execution, partial(advance, workflow=workflow, now=self.clock.now())
        )

    async def _create(self, workflow: Workflow, received: AlertReceived, span: trace.Span) -> bool:
        """Create and start the execution unless cooldown or the policy suppresses it.

        Returns False if the trigger key already exists. The execution is inserted already
        advanced (first steps evaluated or dispatched): one write instead of two.
        """
        key = concurrency_key(workflow, received)
        newest, unfinished = await self._executions_of_key(workflow, key)
        decision = admit(
            workflow,
            key=key,
            received_at=received.received_at,
            newest=newest,
            unfinished=unfinished,
        )
        if isinstance(decision, Suppress):
            EXECUTIONS_SUPPRESSED.labels(reason=decision.reason).inc()
            log.info(
                "execution_forbidden" if decision.reason == "forbid" else "execution_in_cooldown",
                workflow=workflow.ref,
                key=key,
                running=decision.running,
            )
            return True
        if isinstance(decision, Replace):
            for running in decision.cancel:
                await self.progress.apply(
                    running,
                    partial(
                        cancel,
                        workflow=workflow,
                        reason="replaced by a newer alert",
                        now=self.clock.now(),
                    ),
                )
        execution = self._new_execution(
            workflow, received, concurrency_key=key, span=span
        ).model_copy(update={"exclusive_key": decision.exclusive_key})
        transition = advance(execution, workflow, now=self.clock.now())
        # A Conflict (another replica took the concurrency key meanwhile) is transient:
        # the redelivered alert then finds that execution and obeys the policy.
        if not await self.store.insert_execution(transition.execution):
            return False
        count_started(transition.execution)
        log.info(
            "execution_created",
            trace_id=execution.trace_id,
            execution_id=execution.id,
            workflow=workflow.ref,
        )
        await self.progress.publish(transition)
        return True

    async def _executions_of_key(
        self, workflow: Workflow, key: str
    ) -> tuple[Execution | None, list[Execution]]:
        """What `admit` needs to know of the key: only what the workflow's spec asks."""
        spec = workflow.spec
        same_key = ExecutionFilter(
            namespace=workflow.metadata.namespace,
            workflow=workflow.metadata.name,
            concurrency_key=key,
        )
        newest: Execution | None = None
        unfinished: list[Execution] = []
        if spec.cooldown:
            last = await self.store.list_executions(same_key, limit=1)
            newest = last.items[0] if last.items else None
        if spec.concurrency.policy != "Allow":
            active = same_key.model_copy(update={"active": True})
            page = await self.store.list_executions(active, limit=UNFINISHED_LOOKED_AT)
            unfinished = page.items
        return newest, unfinished

    def _new_execution(
        self, workflow: Workflow, received: AlertReceived, *, concurrency_key: str, span: trace.Span
    ) -> Execution:
        """A new execution in the trace of `span`, the admission of its alert."""
        traced = span.get_span_context()
        return new_execution(
            execution_id=str(ULID()),
            workflow=workflow,
            received=received,
            trigger_key=trigger_key(workflow, received),
            concurrency_key=concurrency_key,
            now=self.clock.now(),
            trace_id=f"{traced.trace_id:032x}" if traced.is_valid else None,
            trace_parent=traceparent_of(span),
        )
