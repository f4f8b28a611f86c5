"""The schedule loop (`ScheduleLoop.fire_due`) on a fake clock, the real SQLite store and
the recording publisher: one alert per tick, shared by replicas, catch-up after a gap, a
failed publish tried again, and definitions that change under the loop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.common.clock import Clock
from vigil.common.definitions import DefinitionsView, definition_key
from vigil.common.messages import AlertReceived, Contract
from vigil.common.store import Store
from vigil.common.testing import (
    FakeClock,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
    validated,
)
from vigil.engine.scheduling import ScheduleLoop

START = datetime(2026, 5, 1, 10, 1, tzinfo=UTC)  # a Friday


def schedule(cron: str = "*/5 * * * *", *, catch_up: str = "one", zone: str = "UTC") -> str:
    return f"""
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {{name: health, namespace: ops}}
spec:
  type: schedule
  schedule:
    cron: "{cron}"
    timeZone: {zone}
    catchUp: {catch_up}
    labels: {{alertname: HealthCheck, severity: info}}
    annotations: {{summary: the daily health check}}
"""


def loop(
    store: Store, bus: RecordingPublisher, clock: Clock, view: DefinitionsView
) -> ScheduleLoop:
    return ScheduleLoop(store=store, bus=bus, definitions=view, clock=clock)


def fired(bus: RecordingPublisher) -> list[datetime]:
    return [m.alert.starts_at for m in bus.messages(AlertReceived)]


async def test_each_tick_fires_one_firing_alert_starting_at_the_tick(tmp_path: Path) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule()))

        upcoming = await schedules.fire_due()
        assert fired(bus) == []  # nothing before the first tick after it was first seen
        assert upcoming == datetime(2026, 5, 1, 10, 5, tzinfo=UTC)

        clock.current = upcoming
        assert await schedules.fire_due() == datetime(2026, 5, 1, 10, 10, tzinfo=UTC)
        assert await schedules.fire_due() == datetime(2026, 5, 1, 10, 10, tzinfo=UTC)

    (item,) = bus.published
    assert item.subject == "vigil.alerts.ops.health"
    message = item.message
    assert isinstance(message, AlertReceived)
    assert (message.namespace, message.source, message.alert.status) == ("ops", "health", "firing")
    assert message.alert.starts_at == upcoming
    assert message.alert.labels == {"alertname": "HealthCheck", "severity": "info"}
    assert message.alert.annotations == {"summary": "the daily health check"}
    assert item.msg_id.endswith(f"/firing/{upcoming.isoformat()}")


async def test_the_fingerprint_is_the_same_at_every_tick(tmp_path: Path) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule()))
        await schedules.fire_due()
        for minute in (5, 10, 15):
            clock.current = START.replace(minute=minute)
            await schedules.fire_due()

    assert len(fired(bus)) == 3
    assert len({m.alert.fingerprint for m in bus.messages(AlertReceived)}) == 1


async def test_two_replicas_fire_each_tick_once(tmp_path: Path) -> None:
    clock = FakeClock(START)
    buses = [RecordingPublisher(), RecordingPublisher()]
    async with sqlite_store(tmp_path) as store_a, sqlite_store(tmp_path) as store_b:
        replicas = [
            loop(store, bus, clock, definitions_view(schedule()))
            for store, bus in zip((store_a, store_b), buses, strict=True)
        ]
        for replica in replicas:
            await replica.fire_due()
        for minute in (5, 10, 15):
            clock.current = START.replace(minute=minute)
            for replica in replicas:
                await replica.fire_due()

    # Each replica has its own bus: only the stored claim keeps the second from publishing.
    assert sorted(fired(buses[0]) + fired(buses[1])) == [
        START.replace(minute=5),
        START.replace(minute=10),
        START.replace(minute=15),
    ]


async def test_after_downtime_catch_up_one_fires_the_latest_missed_tick_once(
    tmp_path: Path,
) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        before = loop(store, bus, clock, definitions_view(schedule()))
        await before.fire_due()
        clock.current = START.replace(minute=5)
        await before.fire_due()

        clock.current = START.replace(hour=13, minute=7)  # down for three hours: 37 ticks
        restarted = loop(store, bus, clock, definitions_view(schedule()))
        await restarted.fire_due()
        await restarted.fire_due()

    assert fired(bus) == [START.replace(minute=5), START.replace(hour=13, minute=5)]


async def test_after_downtime_catch_up_none_skips_the_missed_ticks(tmp_path: Path) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    spec = schedule(catch_up="none")
    async with sqlite_store(tmp_path) as store:
        before = loop(store, bus, clock, definitions_view(spec))
        await before.fire_due()
        clock.current = START.replace(minute=5)
        await before.fire_due()

        clock.current = START.replace(hour=13, minute=7)
        restarted = loop(store, bus, clock, definitions_view(spec))
        assert await restarted.fire_due() == START.replace(hour=13, minute=10)
        clock.current = START.replace(hour=13, minute=10)
        await restarted.fire_due()

    assert fired(bus) == [START.replace(minute=5), START.replace(hour=13, minute=10)]


async def test_a_failed_publish_claims_nothing_and_the_next_pass_fires_it(
    tmp_path: Path,
) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule()))
        await schedules.fire_due()
        clock.current = START.replace(minute=5)
        bus.fail_next()
        await schedules.fire_due()
        assert fired(bus) == []
        assert await store.last_ticks() == {}

        clock.advance(2)
        await schedules.fire_due()
        assert await store.last_ticks() == {"ops/health": START.replace(minute=5)}

    assert fired(bus) == [START.replace(minute=5)]


class _CountingPublisher(RecordingPublisher):
    """Counts publish calls; `die_next` makes the next one kill the engine mid-publish."""

    calls = 0
    die_next = False

    async def publish(self, subject: str, message: Contract, *, msg_id: str) -> bool:
        self.calls += 1
        if self.die_next:
            self.die_next = False
            raise SystemExit("killed while publishing; the message never arrived")
        return await super().publish(subject, message, msg_id=msg_id)


class _DiesBeforeClaiming:
    """A store whose next `claim_tick` never returns: the engine died after publishing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dead = False

    async def claim_tick(self, schedule: str, tick: datetime) -> bool:
        if self.dead:
            self.dead = False
            raise SystemExit("killed between the publish and the claim")
        return await self.store.claim_tick(schedule, tick)

    async def last_ticks(self) -> dict[str, datetime]:
        return await self.store.last_ticks()


async def test_an_engine_killed_between_publish_and_claim_loses_no_tick(
    tmp_path: Path,
) -> None:
    """The tick stays unclaimed, so the next engine publishes it again: the stream (here
    the recording publisher, which deduplicates by message id as JetStream does) keeps one."""
    clock, bus = FakeClock(START), _CountingPublisher()
    async with sqlite_store(tmp_path) as store:
        dying = _DiesBeforeClaiming(store)
        schedules = ScheduleLoop(
            store=dying,
            bus=bus,
            definitions=definitions_view(schedule()),
            clock=clock,
        )
        await schedules.fire_due()
        clock.current = START.replace(minute=5)
        await schedules.fire_due()
        clock.current, dying.dead = START.replace(minute=10), True
        with pytest.raises(SystemExit):
            await schedules.fire_due()
        assert await store.last_ticks() == {"ops/health": START.replace(minute=5)}

        clock.advance(30)
        restarted = loop(store, bus, clock, definitions_view(schedule()))
        await restarted.fire_due()
        assert await store.last_ticks() == {"ops/health": START.replace(minute=10)}
        assert bus.calls == 3  # minute 10 twice: the second one deduplicated

    assert fired(bus) == [START.replace(minute=5), START.replace(minute=10)]


async def test_an_engine_killed_while_publishing_loses_no_tick(tmp_path: Path) -> None:
    """Nothing is claimed before the stream has the alert: the tick an engine died
    publishing is still due for the next engine."""
    clock, bus = FakeClock(START), _CountingPublisher()
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule()))
        await schedules.fire_due()
        clock.current = START.replace(minute=5)
        await schedules.fire_due()
        clock.current, bus.die_next = START.replace(minute=10), True
        with pytest.raises(SystemExit):
            await schedules.fire_due()

        clock.advance(30)
        restarted = loop(store, bus, clock, definitions_view(schedule()))
        await restarted.fire_due()
        assert await store.last_ticks() == {"ops/health": START.replace(minute=10)}

    assert fired(bus) == [START.replace(minute=5), START.replace(minute=10)]


async def test_daily_in_a_time_zone_fires_at_local_midnight(tmp_path: Path) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule("@daily", zone="Asia/Tokyo")))
        upcoming = await schedules.fire_due()
        assert upcoming == datetime(2026, 5, 1, 15, 0, tzinfo=UTC)  # 00:00 JST on 2 May
        clock.current = upcoming
        await schedules.fire_due()

    assert fired(bus) == [upcoming]


async def test_a_changed_schedule_fires_no_past_tick_and_a_removed_one_nothing(
    tmp_path: Path,
) -> None:
    clock, bus = FakeClock(START), RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        view = definitions_view(schedule("0 * * * *"))
        schedules = loop(store, bus, clock, view)
        await schedules.fire_due()
        clock.current = START.replace(hour=11, minute=0)
        await schedules.fire_due()
        assert fired(bus) == [START.replace(hour=11, minute=0)]

        clock.current = START.replace(hour=11, minute=7)
        (changed,) = validated(schedule("*/5 * * * *")).definitions
        view.add(changed)
        assert await schedules.fire_due() == START.replace(hour=11, minute=10)

        view.apply(definition_key("Source", "ops", "health"), None)
        clock.current = START.replace(hour=11, minute=10)
        assert await schedules.fire_due() is None

    assert fired(bus) == [START.replace(hour=11, minute=0)]


async def test_the_loop_sleeps_until_the_next_tick_at_most_the_poll(tmp_path: Path) -> None:
    clock, bus = (
        FakeClock(START.replace(minute=4, second=59, microsecond=500000)),
        RecordingPublisher(),
    )
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(schedule()))
        await schedules.fire_due()
        upcoming = await schedules.fire_due()
        assert upcoming is not None
        delay = min(schedules.poll, (upcoming - clock.now()).total_seconds())
        assert delay == 0.5
        await clock.sleep(delay)
        await schedules.fire_due()

    assert fired(bus) == [START.replace(minute=5)]


async def test_a_schedule_block_on_another_source_type_fires_nothing(tmp_path: Path) -> None:
    """Only `type: schedule` fires: an alertmanager Source with a stray block takes POSTs."""
    clock, bus = FakeClock(START), RecordingPublisher()
    stray = schedule().replace("type: schedule", "type: alertmanager")
    async with sqlite_store(tmp_path) as store:
        schedules = loop(store, bus, clock, definitions_view(stray))
        assert await schedules.fire_due() is None
        clock.current = datetime(2026, 5, 1, 10, 5, tzinfo=UTC)
        assert await schedules.fire_due() is None
    assert fired(bus) == []
