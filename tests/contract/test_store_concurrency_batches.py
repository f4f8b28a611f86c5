"""Store contract, run on both adapters.

Racing stores (as replicas would), and the batch operations.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from tests.contract.conftest import Stores
from tests.support.documents import (
    LEASE,
    RACING_STORES,
    RETENTION,
    make_execution,
    make_occurrence,
    now_ms,
)
from vigil.common.documents import (
    ExecutionFilter,
    alert_id,
)
from vigil.common.errors import Conflict
from vigil.common.store import Store

pytestmark = pytest.mark.integration

# --- concurrency -----------------------------------------------------------------------


async def test_racing_claimers_claim_each_due_execution_exactly_once(
    store: Store, stores: Stores
) -> None:
    now = now_ms()
    due = {f"ex-{n:02d}" for n in range(50)}
    for number, execution_id in enumerate(sorted(due)):
        await store.insert_execution(
            make_execution(execution_id, at=now, wake_at=now - timedelta(seconds=number % 7))
        )
    claimers = await stores.open(8)

    async def claim_until_dry(claimer: Store, owner: str) -> list[str]:
        claimed: list[str] = []
        while batch := await claimer.claim_due(now, owner=owner, lease=LEASE, limit=4):
            claimed += [e.id for e in batch]
        return claimed

    results = await asyncio.gather(
        *(claim_until_dry(claimer, f"engine-{n}") for n, claimer in enumerate(claimers))
    )

    counts = Counter(execution_id for claimed in results for execution_id in claimed)
    assert set(counts) == due
    assert set(counts.values()) == {1}


async def test_racing_inserts_of_one_trigger_key_let_exactly_one_in(stores: Stores) -> None:
    racers = await stores.open(RACING_STORES)
    at = now_ms()

    inserted = await asyncio.gather(
        *(
            racers[n % RACING_STORES].insert_execution(
                make_execution(f"ex-{n}", at=at, trigger_key="shop/restart-pod/fp-1")
            )
            for n in range(10)
        )
    )

    assert sorted(inserted) == [False] * 9 + [True]
    winner = f"ex-{inserted.index(True)}"
    found = await racers[0].find_by_trigger_key("shop/restart-pod/fp-1")
    assert found is not None
    assert found.id == winner


async def test_racing_inserts_of_one_exclusive_key_let_exactly_one_in(stores: Stores) -> None:
    racers = await stores.open(RACING_STORES)
    at = now_ms()

    async def insert(n: int) -> str:
        execution = make_execution(f"ex-{n}", at=at, exclusive_key="shop/restart-pod/fp-1")
        try:
            inserted = await racers[n % RACING_STORES].insert_execution(execution)
        except Conflict:
            return "conflict"
        return "inserted" if inserted else "duplicate"

    outcomes = await asyncio.gather(*(insert(n) for n in range(10)))

    assert sorted(outcomes) == ["conflict"] * 9 + ["inserted"]
    active = await racers[0].list_executions(ExecutionFilter(active=True))
    assert [e.id for e in active.items] == [f"ex-{outcomes.index('inserted')}"]


async def test_racing_updates_from_one_version_let_exactly_one_win(
    store: Store, stores: Stores
) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-1", at=at))
    racers = await stores.open(RACING_STORES)

    async def update(n: int) -> str:
        attempt = make_execution("ex-1", at=at, state="running", version=1).model_copy(
            update={"error": f"writer {n}"}
        )
        try:
            await racers[n % RACING_STORES].update_execution(attempt, expected_version=0)
        except Conflict:
            return "conflict"
        return "won"

    outcomes = await asyncio.gather(*(update(n) for n in range(10)))

    assert sorted(outcomes) == ["conflict"] * 9 + ["won"]
    found = await store.get_execution("ex-1")
    assert found is not None
    assert found.version == 1
    assert found.error == f"writer {outcomes.index('won')}"


async def test_racing_records_of_one_alert_count_every_occurrence(
    store: Store, stores: Stores
) -> None:
    at = now_ms()
    racers = await stores.open(RACING_STORES)

    await asyncio.gather(
        *(
            racers[n % RACING_STORES].record_alert(make_occurrence(at=at + timedelta(seconds=n)))
            for n in range(20)
        )
    )

    record = await store.get_alert(alert_id("shop", "alertmanager", "fp-1"))
    assert record is not None
    assert record.occurrences == 20
    assert record.first_seen == at
    assert record.last_seen == at + timedelta(seconds=19)


# --- batches ---------------------------------------------------------------------------


async def test_record_alerts_is_record_alert_for_each_in_order(store: Store) -> None:
    at = now_ms()
    batch = [
        make_occurrence(at=at, fingerprint="fp-1"),
        make_occurrence(at=at + timedelta(seconds=1), fingerprint="fp-2"),
        make_occurrence(at=at + timedelta(seconds=2), fingerprint="fp-1", status="resolved"),
    ]
    records = await store.record_alerts(batch)

    assert [(r.fingerprint, r.status, r.occurrences) for r in records] == [
        ("fp-1", "firing", 1),
        ("fp-2", "firing", 1),
        ("fp-1", "resolved", 2),
    ]
    stored = await store.get_alert(alert_id("shop", "alertmanager", "fp-1"))
    assert stored is not None
    assert [h.status for h in stored.history] == ["firing", "resolved"]
    assert stored.occurrences == 2
    again = await store.record_alerts([make_occurrence(at=at + timedelta(seconds=3))])
    assert again[0].occurrences == 3
    assert await store.record_alerts([]) == []


async def test_insert_executions_reports_which_trigger_keys_were_new(store: Store) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-0", at=at, trigger_key="t-0"))
    batch = [
        make_execution("ex-1", at=at, trigger_key="t-1"),
        make_execution("ex-2", at=at, trigger_key="t-0"),  # exists already
        make_execution("ex-3", at=at, trigger_key="t-1"),  # earlier in this batch
        make_execution("ex-4", at=at, trigger_key="t-4"),
    ]
    assert await store.insert_executions(batch) == [True, False, False, True]
    assert await store.get_execution("ex-1") == batch[0]
    assert await store.get_execution("ex-2") is None
    assert await store.get_execution("ex-3") is None
    found = await store.find_by_trigger_key("t-4")
    assert found is not None
    assert found.id == "ex-4"
    with pytest.raises(ValueError, match="one by one"):
        await store.insert_executions([make_execution("ex-5", at=at, exclusive_key="k")])


async def test_get_executions_returns_those_that_exist(store: Store) -> None:
    at = now_ms()
    for name in ("ex-1", "ex-2"):
        await store.insert_execution(make_execution(name, at=at))
    found = await store.get_executions(["ex-2", "ex-1", "ex-unknown", "ex-1"])
    assert sorted(found) == ["ex-1", "ex-2"]
    assert found["ex-1"] == await store.get_execution("ex-1")
    assert await store.get_executions([]) == {}


async def test_update_executions_saves_what_is_current_and_reports_the_rest(
    store: Store,
) -> None:
    at = now_ms()
    one = make_execution("ex-1", at=at)
    two = make_execution("ex-2", at=at)
    for execution in (one, two):
        await store.insert_execution(execution)
    await store.update_execution(two.model_copy(update={"version": 1}), expected_version=0)

    first = one.model_copy(update={"version": 1, "state": "running"})
    second = first.model_copy(update={"version": 2, "state": "succeeded", "finished_at": at})
    stale = two.model_copy(update={"version": 1, "state": "failed"})
    saved = await store.update_executions([(first, 0), (second, 1), (stale, 0)])

    assert saved == [True, True, False]
    assert await store.get_execution("ex-1") == second.model_copy(
        update={"expire_at": at + RETENTION.executions}
    )
    stored_two = await store.get_execution("ex-2")
    assert stored_two is not None
    assert stored_two.version == 1
    assert stored_two.state == "pending"
    with pytest.raises(ValueError, match="new version"):
        await store.update_executions([(first, 5)])
