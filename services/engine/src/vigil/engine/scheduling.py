"""The schedule loop: schedule Sources fire synthetic alerts at the ticks of their cron.

For each schedule Source in the definitions view the loop works out which tick is due
(`vigil.common.cron.due_tick`), publishes its alert to the ALERTS stream, where admission
takes it as any other, and only then claims the tick in the store
(`ScheduleStore.claim_tick`, a compare-and-set on the schedule's last fired tick). The
order is what makes a tick impossible to lose: an engine that dies after the publish and
before the claim leaves the tick unclaimed, and the next pass (of any replica) publishes it
again. Publishing twice is harmless: the `Nats-Msg-Id` is the occurrence (source,
fingerprint, status, tick), so the stream drops a second publish within its duplicate
window, and admission creates one execution per occurrence (its trigger key) after that.
Of several replicas that race on a tick, all may publish and one claims; the claim is what
moves every replica on to the next tick. A failed publish claims nothing, and the tick is
tried again at the next pass.

A schedule that has never fired starts from the moment this engine first saw it; a spec
changed while the engine runs starts again from the change, so an edit fires no past tick.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from vigil.common import subjects
from vigil.common.bus import Publisher
from vigil.common.clock import Clock
from vigil.common.cron import Cron, due_tick
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError, VigilError
from vigil.common.messages import Alert, AlertReceived, Group
from vigil.common.resources import ScheduleSpec, Source
from vigil.common.store import ScheduleStore

log = structlog.get_logger(__name__)


def schedule_key(source: Source) -> str:
    return f"{source.metadata.namespace}/{source.metadata.name}"


def schedule_fingerprint(source: Source) -> str:
    """Stable per Source: a workflow's concurrency key and cooldown apply across ticks."""
    return hashlib.sha256(f"schedule/{schedule_key(source)}".encode()).hexdigest()[:16]


def scheduled_alert(source: Source, tick: datetime, *, now: datetime) -> AlertReceived:
    """The synthetic alert of one tick: firing, starting at the tick."""
    spec = source.spec.schedule
    assert spec is not None, "a schedule Source has its schedule block"
    return AlertReceived(
        namespace=source.metadata.namespace,
        source=source.metadata.name,
        received_at=now,
        alert=Alert(
            status="firing",
            fingerprint=schedule_fingerprint(source),
            labels={"alertname": source.metadata.name, **spec.labels},
            annotations=dict(spec.annotations),
            starts_at=tick,
        ),
        group=Group(key=f"schedule/{schedule_key(source)}", status="firing"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Anchor:
    """Where a schedule's ticks start when it has none fired after that moment."""

    spec: ScheduleSpec
    at: datetime
    changed: bool  # the spec changed while this engine ran: ticks before `at` never fire


@dataclass(slots=True, kw_only=True)
class ScheduleLoop:
    store: ScheduleStore
    bus: Publisher
    definitions: DefinitionsView
    clock: Clock
    grace: timedelta = timedelta(seconds=60)
    poll: float = 1.0
    _anchors: dict[str, _Anchor] = field(default_factory=dict)

    async def run(self) -> None:
        await self.definitions.ready.wait()
        while True:
            try:
                upcoming = await self.fire_due()
            except TransientError as exc:
                log.warning("schedules_unavailable", error=str(exc))
                upcoming = None
            delay = self.poll
            if upcoming is not None:
                delay = min(delay, max((upcoming - self.clock.now()).total_seconds(), 0.0))
            await self.clock.sleep(delay)

    async def fire_due(self) -> datetime | None:
        """Fire every schedule whose tick is due now; return the earliest next tick."""
        now = self.clock.now()
        last_ticks = await self.store.last_ticks()
        sources = [
            s
            for s in self.definitions.sources()
            if s.spec.type == "schedule" and s.spec.schedule is not None
        ]
        self._forget_all_but({schedule_key(s) for s in sources})
        earliest: datetime | None = None
        for source in sources:
            upcoming = await self._fire_one(source, last_ticks.get(schedule_key(source)), now)
            if upcoming is not None and (earliest is None or upcoming < earliest):
                earliest = upcoming
        return earliest

    async def _fire_one(
        self, source: Source, last: datetime | None, now: datetime
    ) -> datetime | None:
        spec = source.spec.schedule
        assert spec is not None
        cron = Cron.parse(spec.cron, spec.time_zone)
        after = self._after(schedule_key(source), spec, last, now)
        tick = due_tick(cron, after=after, now=now, catch_up=spec.catch_up, grace=self.grace)
        if tick is not None:
            await self._fire(source, tick, now=now)
            after = max(after, tick)
        return cron.next_after(max(after, now))

    def _after(
        self, key: str, spec: ScheduleSpec, last: datetime | None, now: datetime
    ) -> datetime:
        anchor = self._anchors.get(key)
        if anchor is None or anchor.spec != spec:
            anchor = _Anchor(spec=spec, at=now, changed=anchor is not None)
            self._anchors[key] = anchor
        if last is None:
            return anchor.at
        return max(last, anchor.at) if anchor.changed else last

    def _forget_all_but(self, keys: set[str]) -> None:
        for key in set(self._anchors) - keys:
            del self._anchors[key]

    async def _fire(self, source: Source, tick: datetime, *, now: datetime) -> None:
        key = schedule_key(source)
        received = scheduled_alert(source, tick, now=now)
        subject = subjects.alerts(received.namespace, received.source)
        try:
            await self.bus.publish(subject, received, msg_id=received.occurrence_id)
        except TransientError as exc:
            log.warning("schedule_fire_failed", schedule=key, tick=tick.isoformat(), error=str(exc))
            return
        except VigilError as exc:
            log.error("schedule_fire_refused", schedule=key, tick=tick.isoformat(), error=str(exc))
            return
        if await self.store.claim_tick(key, tick):
            log.info("schedule_fired", schedule=key, tick=tick.isoformat())
        else:
            log.debug("schedule_tick_claimed_elsewhere", schedule=key, tick=tick.isoformat())
