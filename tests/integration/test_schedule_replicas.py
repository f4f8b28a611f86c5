"""Two engine replicas' schedule loops against a real nats-server and one SQLite file, on a
fake clock they share: every tick of a schedule Source lands in the ALERTS stream exactly
once, whichever replica fires it, and a restart after downtime catches up one tick.

Each replica has its own bus connection and its own store connection, as two engine
processes would; they race on every tick (`asyncio.gather`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from tests.support.bus import stored
from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.stores import open_store
from vigil.common.messages import AlertReceived
from vigil.common.store import Store
from vigil.common.testing import FakeClock, definitions_view
from vigil.engine.scheduling import ScheduleLoop, scheduled_alert

pytestmark = pytest.mark.integration

START = datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)
SOURCE = """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: every-minute, namespace: ops}
spec:
  type: schedule
  schedule:
    cron: "* * * * *"
    labels: {alertname: Heartbeat}
"""


async def alerts_in_stream(js: JetStreamContext) -> list[AlertReceived]:
    count = await stored(js, subjects.ALERTS_STREAM)
    found = []
    for sequence in range(1, count + 1):
        message = await js.get_msg(subjects.ALERTS_STREAM, sequence)
        assert message.data is not None
        found.append(AlertReceived.model_validate_json(message.data))
    return found


async def test_two_replicas_put_each_tick_in_the_stream_exactly_once(
    nats_url: str, tmp_path: Path, bus: JetStreamBus, js: JetStreamContext
) -> None:
    store_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    clock = FakeClock(START)
    other_bus = await JetStreamBus.connect(nats_url, name="replica-b")
    stores: list[Store] = [await open_store(store_url), await open_store(store_url)]
    try:
        replicas = [
            ScheduleLoop(
                store=store, bus=replica_bus, definitions=definitions_view(SOURCE), clock=clock
            )
            for store, replica_bus in zip(stores, (bus, other_bus), strict=True)
        ]
        await asyncio.gather(*(r.fire_due() for r in replicas))
        ticks = [START.replace(second=0) + timedelta(minutes=n) for n in range(1, 6)]
        for tick in ticks:
            clock.current = tick
            await asyncio.gather(*(r.fire_due() for r in replicas))

        in_stream = await alerts_in_stream(js)
        assert [a.alert.starts_at for a in in_stream] == ticks
        assert {a.alert.fingerprint for a in in_stream} == {in_stream[0].alert.fingerprint}
        assert {a.alert.labels["alertname"] for a in in_stream} == {"Heartbeat"}

        # Both replicas down for an hour; one comes back and fires only the latest tick.
        clock.current = ticks[-1] + timedelta(hours=1, seconds=20)
        restarted = ScheduleLoop(
            store=stores[1], bus=other_bus, definitions=definitions_view(SOURCE), clock=clock
        )
        await restarted.fire_due()
        await restarted.fire_due()
        in_stream = await alerts_in_stream(js)
        assert [a.alert.starts_at for a in in_stream] == [*ticks, ticks[-1] + timedelta(hours=1)]
    finally:
        for store in stores:
            await store.close()
        await other_bus.close()


async def test_a_tick_published_but_never_claimed_is_stored_once(
    tmp_path: Path, bus: JetStreamBus, js: JetStreamContext
) -> None:
    """An engine killed after its publish and before its claim leaves the tick unclaimed:
    the next pass publishes the same occurrence id again, and the stream keeps one."""
    clock = FakeClock(START)
    store = await open_store(f"sqlite:///{tmp_path / 'vigil.db'}")
    try:
        schedules = ScheduleLoop(
            store=store, bus=bus, definitions=definitions_view(SOURCE), clock=clock
        )
        await schedules.fire_due()
        tick = START.replace(second=0) + timedelta(minutes=1)
        clock.current = tick + timedelta(seconds=2)
        # What the killed engine had published: the tick's alert, and no claim.
        source = definitions_view(SOURCE).sources()[0]
        killed = scheduled_alert(source, tick, now=tick)
        subject = subjects.alerts("ops", "every-minute")
        assert await bus.publish(subject, killed, msg_id=killed.occurrence_id)

        await schedules.fire_due()
        assert await store.last_ticks() == {"ops/every-minute": tick}
    finally:
        await store.close()

    assert [a.alert.starts_at for a in await alerts_in_stream(js)] == [tick]
