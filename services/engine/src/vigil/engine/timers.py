"""The engine's clock-driven loops: due timers and retention.

Timers are documents (`wake_at`), not sleeps: the loop claims due executions with a lease
(`Store.claim_due`), so several engine replicas share the work and a restarted engine
picks up every timer that fell due while it was down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import structlog

from vigil.common.clock import Clock
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution
from vigil.common.errors import TransientError, VigilError
from vigil.common.store import ExecutionStore, Store
from vigil.engine.domain.machine import abandon, on_timer
from vigil.engine.progress import NotPublished, Progress

log = structlog.get_logger(__name__)

RETRY_PUBLISH_AFTER = timedelta(seconds=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerLoop:
    store: ExecutionStore
    progress: Progress
    definitions: DefinitionsView
    clock: Clock
    owner: str
    interval: float = 0.25
    lease: timedelta = timedelta(seconds=30)
    batch: int = 100

    async def run(self) -> None:
        await self.definitions.ready.wait()
        while True:
            try:
                handled = await self.tick()
            except TransientError as exc:
                log.warning("timers_unavailable", error=str(exc))
                handled = 0
            if handled < self.batch:
                await self.clock.sleep(self.interval)

    async def tick(self) -> int:
        """Handle every execution whose timer is due now; return how many were claimed."""
        now = self.clock.now()
        due = await self.store.claim_due(now, owner=self.owner, lease=self.lease, limit=self.batch)
        for execution in due:
            workflow = self.definitions.workflow(execution.namespace, execution.workflow)
            if workflow is None:
                # Definitions are loaded before the loop starts: the workflow was deleted.
                reason = f"workflow {execution.namespace}/{execution.workflow} no longer exists"
                transform = partial(abandon, reason=reason, now=self.clock.now())
            else:
                transform = partial(on_timer, workflow=workflow, now=self.clock.now())
            try:
                await self.progress.apply(execution, transform)
            except NotPublished as exc:
                await self._retry_soon(exc.saved)
            except VigilError as exc:
                log.warning("timer_failed", execution_id=execution.id, error=str(exc))
        return len(due)

    async def _retry_soon(self, saved: Execution) -> None:
        """Wake the execution again shortly: the next tick re-publishes its requests (the
        unchanged transition carries them) and restores its real `wake_at`."""
        soon = saved.model_copy(
            update={
                "wake_at": self.clock.now() + RETRY_PUBLISH_AFTER,
                "version": saved.version + 1,
            }
        )
        try:
            await self.store.update_execution(soon, expected_version=saved.version)
        except VigilError as exc:  # moved on (its own result came) or the store is down
            log.warning("timer_republish_not_scheduled", execution_id=saved.id, error=str(exc))


async def purge_expired(store: Store, *, every: float, clock: Clock) -> None:
    """Retention for stores without TTL indexes (SQLite); harmless where they exist."""
    while True:
        try:
            removed = await store.purge(clock.now())
        except TransientError as exc:
            log.warning("purge_failed", error=str(exc))
        else:
            if removed:
                log.info("expired_documents_purged", count=removed)
        await clock.sleep(every)
