"""Store contract, run on both adapters: the claim of a schedule's tick.

A claim is a compare-and-set on the last fired tick of a schedule: of several engine
replicas (separate stores on one database) claiming the same tick exactly one wins, an
older tick never replaces a newer one, and a released claim can be claimed again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.conftest import Stores
from vigil.common.store import Store

pytestmark = pytest.mark.integration

TICK = datetime(2026, 5, 1, 10, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def test_the_first_claim_of_a_tick_wins_and_a_second_loses(store: Store) -> None:
    assert await store.last_ticks() == {}

    assert await store.claim_tick("ops/nightly", TICK) is True
    assert await store.claim_tick("ops/nightly", TICK) is False

    assert await store.last_ticks() == {"ops/nightly": TICK}


async def test_a_later_tick_is_claimed_and_an_earlier_one_never_again(store: Store) -> None:
    assert await store.claim_tick("ops/nightly", TICK)

    assert await store.claim_tick("ops/nightly", TICK + MINUTE) is True
    assert await store.claim_tick("ops/nightly", TICK) is False

    assert await store.last_ticks() == {"ops/nightly": TICK + MINUTE}


async def test_schedules_are_claimed_independently(store: Store) -> None:
    assert await store.claim_tick("ops/nightly", TICK)
    assert await store.claim_tick("ops/hourly", TICK)
    assert await store.claim_tick("dev/nightly", TICK)

    assert await store.last_ticks() == {
        "ops/nightly": TICK,
        "ops/hourly": TICK,
        "dev/nightly": TICK,
    }


async def test_of_replicas_racing_for_a_tick_exactly_one_wins(stores: Stores) -> None:
    replicas = await stores.open(4)

    for minute in range(5):
        tick = TICK + minute * MINUTE
        won = await asyncio.gather(*(r.claim_tick("ops/every-minute", tick) for r in replicas))
        assert sorted(won) == [False, False, False, True], f"tick {tick}"

    assert await replicas[0].last_ticks() == {"ops/every-minute": TICK + 4 * MINUTE}
