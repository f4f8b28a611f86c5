"""Kubernetes mode: the watched objects in, definitions and status out.

`ClusterDefinitions` is fed every watch event of Sources, Workflows, Sinks and Secrets
(`on_event`). After a short quiet spell it validates the whole snapshot as file mode does,
publishes the definitions to the config bucket (`publish_report`), and writes through the
`StatusWriter` port the status of each object whose status should change, with a Warning
Event when a definition is newly rejected. `follow_executions` turns the `EVENTS` stream
into each Workflow's `lastExecution` and counters, one status write per workflow per
interval however many executions ran. `write_next_fires` keeps each schedule Source's
`nextFireAt` current: it wakes at the earliest next tick (or after a reconcile) and patches
the Sources whose value moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from vigil.common.bus import Delivery
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import ConfigBucket
from vigil.common.errors import VigilError
from vigil.common.messages import ExecutionEvent
from vigil.controller.publishing import publish_report
from vigil.controller.reconciling import Body, Key, Snapshot, next_fire_updates, status_updates
from vigil.controller.tally import Tally, status_patch

log = structlog.get_logger(__name__)

QUIET_SECONDS = 0.2  # changes closer together than this are validated together
# `nextFireAt` is looked at again at least this often (a clock jump, a missed wake-up).
NEXT_FIRE_RECHECK_SECONDS = 300.0


class StatusWriter(Protocol):
    """Where the controller writes back (the Kubernetes API)."""

    async def patch_status(self, key: Key, patch: Body) -> Body:
        """Merge `patch` into the object's `status`; return the status as it now is.

        Raises TransientError when the API cannot be reached; NotFound if the object
        is gone.
        """

    async def warn(self, key: Key, body: Body, *, reason: str, message: str) -> None:
        """Record a Warning Event about the object (best effort)."""


@dataclass(slots=True, kw_only=True)
class ClusterDefinitions:
    bucket: ConfigBucket
    writer: StatusWriter
    clock: Clock = SYSTEM_CLOCK
    snapshot: Snapshot = field(default_factory=Snapshot)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    published: asyncio.Event = field(default_factory=asyncio.Event)
    tally: Tally = field(default_factory=Tally)
    reconciled: asyncio.Event = field(default_factory=asyncio.Event)

    def seed(self, bodies: list[Body]) -> None:
        """The objects a full listing returned, before the first reconcile."""
        for body in bodies:
            self.snapshot.put(body)
        self.changed.set()

    def on_event(self, kind: str | None, body: Body) -> None:
        """A watch event: `DELETED` removes the object, anything else stores it."""
        if kind == "DELETED":
            self.snapshot.remove(body)
        else:
            self.snapshot.put(body)
        self.changed.set()

    async def run(self) -> None:
        """Reconcile after every burst of changes, until cancelled."""
        while True:
            await self.changed.wait()
            await asyncio.sleep(QUIET_SECONDS)
            self.changed.clear()
            await self.reconcile()

    async def reconcile(self) -> None:
        report = self.snapshot.validate()
        await publish_report(self.bucket, report)
        self.published.set()
        for update in status_updates(report, self.snapshot, now=self.clock.now()):
            body = self.snapshot.resources[update.key]
            if update.rejected is not None:
                await self.writer.warn(
                    update.key, body, reason="InvalidDefinition", message=update.rejected
                )
            if not await self._write(update.key, update.patch):
                self.changed.set()  # try again with the next reconcile
        self.reconciled.set()

    async def _write(self, key: Key, patch: Body) -> bool:
        try:
            status = await self.writer.patch_status(key, patch)
        except VigilError as exc:
            log.warning("status_not_written", object="/".join(key), error=str(exc))
            return False
        body = self.snapshot.resources.get(key)
        if body is not None:
            self.snapshot.resources[key] = {**body, "status": status}
        return True

    # --- schedules ----------------------------------------------------------------------

    async def write_next_fires(self) -> None:
        """Keep `status.nextFireAt` of schedule Sources current, until cancelled."""
        while True:
            self.reconciled.clear()
            earliest = await self.refresh_next_fires()
            delay = NEXT_FIRE_RECHECK_SECONDS
            if earliest is not None:
                left = (earliest - self.clock.now()).total_seconds()
                delay = min(delay, max(left, 0.0) + 0.001)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reconciled.wait(), timeout=delay)

    async def refresh_next_fires(self) -> datetime | None:
        """Patch every Source whose `nextFireAt` should change; return the earliest next
        fire (None when no ready schedule Source is watched)."""
        updates, earliest = next_fire_updates(self.snapshot, now=self.clock.now())
        for update in updates:
            await self._write(update.key, update.patch)
        return earliest

    # --- executions ----------------------------------------------------------------------

    async def on_execution_event(self, event: ExecutionEvent, delivery: Delivery) -> None:
        self.tally.record(event)

    async def write_executions(self, every: float) -> None:
        """Every `every` seconds, one status write per workflow that had executions."""
        while True:
            await self.clock.sleep(every)
            await self.flush_executions()

    async def flush_executions(self) -> int:
        """Write what the tally gathered; return how many workflows were written."""
        written = 0
        for (namespace, name), runs in self.tally.take().items():
            key = ("Workflow", namespace, name)
            if key not in self.snapshot.resources:
                continue  # not watched here (another namespace), or deleted meanwhile
            if await self._write(key, status_patch(runs, self.snapshot.status_of(key))):
                written += 1
            else:
                self.tally.restore((namespace, name), runs)  # counted at the next write
        return written


def summary(bodies: list[dict[str, Any]]) -> dict[str, int]:
    """How many objects of each kind: for the start-up log line."""
    counts: dict[str, int] = {}
    for body in bodies:
        kind = str(body.get("kind"))
        counts[kind] = counts.get(kind, 0) + 1
    return counts
