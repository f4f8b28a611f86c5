"""Store contract, run on both adapters.

Durable timers, artifacts and deliveries, retention, health and errors.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from tests.support.documents import (
    ADAPTERS,
    LEASE,
    RETENTION,
    make_artifact,
    make_delivery,
    make_execution,
    make_occurrence,
    now_ms,
)
from tests.support.mongo import drop_database, with_database
from tests.support.nats import free_port
from vigil.common.adapters.stores import open_store
from vigil.common.documents import (
    alert_id,
)
from vigil.common.errors import TransientError
from vigil.common.store import Store

pytestmark = pytest.mark.integration

# --- timers ----------------------------------------------------------------------------


async def test_claim_due_leases_only_due_unfinished_unleased_executions(store: Store) -> None:
    now = now_ms()
    await store.insert_execution(
        make_execution("due-late", at=now, wake_at=now - timedelta(minutes=2))
    )
    await store.insert_execution(make_execution("due-now", at=now, wake_at=now, state="running"))
    await store.insert_execution(
        make_execution("future", at=now, wake_at=now + timedelta(seconds=1))
    )
    await store.insert_execution(make_execution("no-timer", at=now))
    await store.insert_execution(
        make_execution(
            "finished",
            at=now,
            wake_at=now - timedelta(minutes=1),
            state="succeeded",
            finished_at=now,
        )
    )

    claimed = await store.claim_due(now, owner="engine-a", lease=LEASE)

    assert [e.id for e in claimed] == ["due-late", "due-now"]
    assert claimed[0] == await store.get_execution("due-late")


async def test_claim_due_takes_the_earliest_timers_up_to_the_limit(store: Store) -> None:
    now = now_ms()
    for minutes in (3, 1, 4, 2):
        await store.insert_execution(
            make_execution(f"ex-{minutes}", at=now, wake_at=now - timedelta(minutes=minutes))
        )

    first = await store.claim_due(now, owner="engine-a", lease=LEASE, limit=2)
    rest = await store.claim_due(now, owner="engine-a", lease=LEASE, limit=10)

    assert [e.id for e in first] == ["ex-4", "ex-3"]
    assert [e.id for e in rest] == ["ex-2", "ex-1"]


async def test_lease_holds_until_it_expires(store: Store) -> None:
    now = now_ms()
    await store.insert_execution(make_execution("ex-1", at=now, wake_at=now))
    assert [e.id for e in await store.claim_due(now, owner="engine-a", lease=LEASE)] == ["ex-1"]

    during = await store.claim_due(now + LEASE, owner="engine-b", lease=LEASE)
    after = await store.claim_due(
        now + LEASE + timedelta(milliseconds=1), owner="engine-b", lease=LEASE
    )

    assert during == []
    assert [e.id for e in after] == ["ex-1"]


async def test_update_execution_releases_the_lease(store: Store) -> None:
    now = now_ms()
    execution = make_execution("ex-1", at=now, wake_at=now)
    await store.insert_execution(execution)
    await store.claim_due(now, owner="engine-a", lease=LEASE)

    rescheduled = execution.model_copy(update={"version": 1, "state": "running"})
    await store.update_execution(rescheduled, expected_version=0)

    assert await store.claim_due(now, owner="engine-b", lease=LEASE) == [rescheduled]


# --- artifacts and deliveries ----------------------------------------------------------


async def test_artifact_round_trips_and_is_replaced_by_id(store: Store) -> None:
    at = now_ms()
    await store.put_artifact(make_artifact("art-1", at=at, content="first"))
    await store.put_artifact(make_artifact("art-1", at=at, content="x" * 200_000))

    found = await store.get_artifact("art-1")

    assert found == make_artifact("art-1", at=at, content="x" * 200_000).model_copy(
        update={"expire_at": at + RETENTION.artifacts}
    )
    assert await store.get_artifact("art-unknown") is None


async def test_deliveries_are_listed_oldest_first_by_execution_or_key(store: Store) -> None:
    at = now_ms()
    records = [
        make_delivery("d-3", at=at + timedelta(seconds=2), execution="ex-1", key="k-1"),
        make_delivery("d-1", at=at, execution="ex-1", key="k-1"),
        make_delivery("d-2", at=at + timedelta(seconds=1), execution="ex-1", key="k-2"),
        make_delivery("d-4", at=at, execution="ex-2", key="k-3"),
    ]
    for record in records:
        await store.record_delivery(record)
    retried = records[1].model_copy(update={"status": "retrying", "detail": "HTTP 503"})
    await store.record_delivery(retried)

    by_execution = await store.deliveries(execution_id="ex-1")
    by_key = await store.deliveries(idempotency_key="k-1")

    assert [d.id for d in by_execution] == ["d-1", "d-2", "d-3"]
    assert by_execution[0] == retried.model_copy(update={"expire_at": at + RETENTION.deliveries})
    assert [d.id for d in by_key] == ["d-1", "d-3"]
    assert await store.deliveries(execution_id="ex-unknown") == []
    with pytest.raises(ValueError, match="exactly one"):
        await store.deliveries(execution_id="ex-1", idempotency_key="k-1")
    with pytest.raises(ValueError, match="exactly one"):
        await store.deliveries()


# --- retention -------------------------------------------------------------------------


async def test_finished_execution_expires_after_retention_and_purge_removes_it(
    store: Store,
) -> None:
    at = now_ms()
    finished_at = at + timedelta(minutes=1)
    await store.insert_execution(make_execution("running", at=at, state="running"))
    await store.insert_execution(make_execution("ex-1", at=at))
    done = make_execution("ex-1", at=at, state="succeeded", finished_at=finished_at, version=1)
    await store.update_execution(done, expected_version=0)

    found = await store.get_execution("ex-1")
    assert found is not None
    assert found.expire_at == finished_at + RETENTION.executions
    running = await store.get_execution("running")
    assert running is not None
    assert running.expire_at is None

    assert await store.purge(finished_at + RETENTION.executions - timedelta(seconds=1)) == 0
    assert await store.purge(finished_at + RETENTION.executions + timedelta(days=365)) == 1
    assert await store.get_execution("ex-1") is None
    assert await store.get_execution("running") == running


async def test_inserted_finished_execution_gets_its_expiry(store: Store) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-1", at=at, state="failed", finished_at=at))

    found = await store.get_execution("ex-1")

    assert found is not None
    assert found.expire_at == at + RETENTION.executions


async def test_alerts_artifacts_and_deliveries_expire_after_retention(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at, fingerprint="old"))
    await store.record_alert(make_occurrence(at=at + timedelta(days=2), fingerprint="recent"))
    await store.put_artifact(make_artifact("art-1", at=at))
    await store.record_delivery(make_delivery("d-1", at=at, execution="ex-1", key="k-1"))

    # Deliveries keep 1 day, artifacts 2, alerts 3 from their last sighting.
    assert await store.purge(at + timedelta(days=1)) == 1
    assert await store.deliveries(execution_id="ex-1") == []
    assert await store.purge(at + timedelta(days=2)) == 1
    assert await store.get_artifact("art-1") is None
    assert await store.purge(at + timedelta(days=3)) == 1
    assert await store.get_alert(alert_id("shop", "alertmanager", "old")) is None
    recent = await store.get_alert(alert_id("shop", "alertmanager", "recent"))
    assert recent is not None
    assert recent.expire_at == at + timedelta(days=2) + RETENTION.alerts


# --- health and errors -----------------------------------------------------------------


async def test_ping_answers(store: Store) -> None:
    await store.ping()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/a-file/vigil.db",
        "mongodb://127.0.0.1:{port}/vigil?serverSelectionTimeoutMS=200&connectTimeoutMS=200",
    ],
    ids=ADAPTERS,
)
async def test_unreachable_store_raises_transient_error(url: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("a file where a directory should be")
    port = free_port()  # nothing listens there

    with pytest.raises(TransientError):
        await open_store(url.format(tmp=tmp_path, port=port), retention=RETENTION)


async def test_mongodb_expires_every_collection_with_ttl_indexes(mongodb_url: str) -> None:
    url = with_database(mongodb_url, f"vigil_test_{uuid.uuid4().hex}")
    store = await open_store(url, retention=RETENTION)
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    try:
        database = client.get_default_database()
        for name in ("executions", "alerts", "artifacts", "deliveries"):
            indexes = await (await database[name].list_indexes()).to_list()
            ttl = [i for i in indexes if "expireAfterSeconds" in i]
            assert [(dict(i["key"]), i["expireAfterSeconds"]) for i in ttl] == [
                ({"expire_at": 1}, 0)
            ], name
        trigger = [
            i
            for i in await (await database.executions.list_indexes()).to_list()
            if dict(i["key"]) == {"trigger_key": 1}
        ]
        assert [i.get("unique") for i in trigger] == [True]
    finally:
        await client.close()
        await store.close()
        drop_database(url)
