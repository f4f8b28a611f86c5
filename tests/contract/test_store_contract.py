"""The store port's contract (`vigil.common.store`), run against both adapters.

Every test runs twice: on SQLite (a file in the test's temporary directory) and on MongoDB
through the real PyMongo driver (mongoeco's wire server, or a real MongoDB when
`VIGIL_TEST_MONGODB_URL` is set), each test in a database of its own. Both stores are opened
through `open_store`, as the services open them. Concurrency tests open several stores on
the same database and race them with `asyncio.gather`.

Times are whole milliseconds: BSON dates keep no finer precision (see
`test_datetimes_keep_microseconds`, which records that difference).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
from pymongo import AsyncMongoClient

from tests.support.mongo import drop_database, with_database
from tests.support.nats import free_port
from vigil.common.alertmanager import AlertStatus
from vigil.common.documents import (
    AlertFilter,
    AlertRecord,
    Artifact,
    DeliveryRecord,
    Execution,
    ExecutionFilter,
    StatusChange,
    StepRecord,
    alert_id,
)
from vigil.common.errors import Conflict, InvalidInput, TransientError
from vigil.common.messages import Alert, AlertReceived, ExecutionState
from vigil.common.store import Retention, Store, open_store

pytestmark = pytest.mark.integration

ADAPTERS = ["sqlite", "mongodb"]
RETENTION = Retention(
    executions=timedelta(days=7),
    alerts=timedelta(days=3),
    artifacts=timedelta(days=2),
    deliveries=timedelta(days=1),
)
LEASE = timedelta(minutes=5)
RACING_STORES = 4


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@pytest.fixture
def store_url(adapter: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store of this test alone: a fresh SQLite file, or a fresh MongoDB database."""
    if adapter == "sqlite":
        yield "sqlite:///" + str(tmp_path / "vigil.db")
        return
    server = cast(str, request.getfixturevalue("mongodb_url"))
    url = with_database(server, f"vigil_test_{uuid.uuid4().hex}")
    yield url
    drop_database(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, retention=RETENTION)
    yield opened
    await opened.close()


@dataclass
class Stores:
    """Opens more stores on the same database (as other replicas or processes would)."""

    url: str
    opened: list[Store] = field(default_factory=list)

    async def open(self, count: int) -> list[Store]:
        more = [await open_store(self.url, retention=RETENTION) for _ in range(count)]
        self.opened += more
        return more


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[Stores]:
    opened = Stores(store_url)
    yield opened
    for one in opened.opened:
        await one.close()


# --- documents -------------------------------------------------------------------------


def now_ms() -> datetime:
    """The current time in whole milliseconds, the precision both stores keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_execution(
    execution_id: str,
    *,
    at: datetime,
    trigger_key: str | None = None,
    namespace: str = "shop",
    workflow: str = "restart-pod",
    state: ExecutionState = "pending",
    alert: str = "",
    concurrency_key: str = "fp-1",
    exclusive_key: str | None = None,
    wake_at: datetime | None = None,
    finished_at: datetime | None = None,
    version: int = 0,
) -> Execution:
    return Execution(
        id=execution_id,
        namespace=namespace,
        workflow=workflow,
        source="alertmanager",
        alert_id=alert,
        trigger_key=trigger_key or f"trigger-{execution_id}",
        concurrency_key=concurrency_key,
        exclusive_key=exclusive_key,
        alert=Alert(
            status="firing",
            fingerprint=f"fp-{execution_id}",
            labels={"alertname": "KubePodCrashLooping", "pod": "api-7f9c"},
            starts_at=at - timedelta(minutes=5),
        ),
        state=state,
        version=version,
        created_at=at,
        updated_at=at,
        finished_at=finished_at,
        wake_at=wake_at,
        steps=[StepRecord(name="restart", kind="cli")],
    )


def make_occurrence(
    *,
    at: datetime,
    status: AlertStatus = "firing",
    fingerprint: str = "fp-1",
    labels: dict[str, str] | None = None,
    namespace: str = "shop",
    source: str = "alertmanager",
) -> AlertReceived:
    return AlertReceived(
        namespace=namespace,
        source=source,
        received_at=at,
        alert=Alert(
            status=status,
            fingerprint=fingerprint,
            labels={"alertname": "KubePodCrashLooping"} if labels is None else labels,
            annotations={"summary": "api is crash-looping"},
            starts_at=at - timedelta(minutes=1),
            ends_at=at if status == "resolved" else None,
        ),
    )


def make_delivery(delivery_id: str, *, at: datetime, execution: str, key: str) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery_id,
        idempotency_key=key,
        execution_id=execution,
        step="notify",
        sink="oncall",
        sink_type="webhook",
        attempt=1,
        status="delivered",
        at=at,
    )


def make_artifact(artifact_id: str, *, at: datetime, content: str = "log line\n") -> Artifact:
    return Artifact(
        id=artifact_id,
        execution_id="ex-1",
        step="restart",
        kind="stdout",
        content=content,
        created_at=at,
    )


# --- executions ------------------------------------------------------------------------


async def test_inserted_execution_reads_back_equal_with_aware_datetimes(store: Store) -> None:
    at = now_ms().astimezone(timezone(timedelta(hours=2)))
    execution = make_execution(
        "ex-1", at=at, wake_at=at + timedelta(minutes=1), exclusive_key="shop/restart-pod/fp-1"
    ).model_copy(
        update={
            "deadline_at": at + timedelta(hours=1),
            "steps": [
                StepRecord(
                    name="restart",
                    kind="cli",
                    state="succeeded",
                    attempt=2,
                    started_at=at,
                    finished_at=at + timedelta(seconds=3),
                    output={
                        "exit_code": 0,
                        "ratio": 0.5,
                        "lines": ["a", "b"],
                        "nested": {"k": None},
                    },
                ),
                StepRecord(
                    name="notify",
                    kind="notify",
                    state="running",
                    started_at=at,
                    deadline_at=at + timedelta(minutes=5),
                ),
                StepRecord(
                    name="retry", kind="cli", attempt=1, not_before=at, error="exit status 1"
                ),
            ],
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    )

    assert await store.insert_execution(execution) is True

    by_id = await store.get_execution("ex-1")
    by_key = await store.find_by_trigger_key(execution.trigger_key)
    assert by_id == execution
    assert by_key == execution
    assert by_id is not None
    for moment in (by_id.created_at, by_id.updated_at, by_id.wake_at, by_id.alert.starts_at):
        assert moment is not None
        assert moment.utcoffset() is not None
    assert await store.get_execution("ex-unknown") is None
    assert await store.find_by_trigger_key("trigger-unknown") is None


async def test_datetimes_keep_at_least_milliseconds(store: Store) -> None:
    """The port promises millisecond precision (BSON dates); SQLite keeps more."""
    at = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    await store.insert_execution(make_execution("ex-1", at=at))

    found = await store.get_execution("ex-1")

    assert found is not None
    assert found.created_at.replace(microsecond=found.created_at.microsecond // 1000 * 1000) == (
        at.replace(microsecond=123000)
    )


async def test_duplicate_trigger_key_returns_false_and_keeps_the_first(store: Store) -> None:
    at = now_ms()
    first = make_execution("ex-1", at=at, trigger_key="shop/restart-pod/fp-1")
    second = make_execution("ex-2", at=at, trigger_key="shop/restart-pod/fp-1", workflow="other")

    assert await store.insert_execution(first) is True
    assert await store.insert_execution(second) is False

    assert await store.find_by_trigger_key("shop/restart-pod/fp-1") == first
    assert await store.get_execution("ex-2") is None


async def test_inserting_the_same_execution_twice_returns_false(store: Store) -> None:
    execution = make_execution("ex-1", at=now_ms())

    assert await store.insert_execution(execution) is True
    assert await store.insert_execution(execution) is False
    assert await store.get_execution("ex-1") == execution


async def test_update_replaces_the_document_at_the_next_version(store: Store) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-1", at=at))
    running = make_execution("ex-1", at=at, state="running", version=1).model_copy(
        update={"updated_at": at + timedelta(seconds=1), "error": "first attempt failed"}
    )

    await store.update_execution(running, expected_version=0)

    assert await store.get_execution("ex-1") == running


async def test_update_from_a_stale_version_raises_conflict_and_changes_nothing(
    store: Store,
) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-1", at=at))
    winner = make_execution("ex-1", at=at, state="running", version=1)
    await store.update_execution(winner, expected_version=0)

    loser = make_execution("ex-1", at=at, state="cancelled", version=1)
    with pytest.raises(Conflict):
        await store.update_execution(loser, expected_version=0)

    assert await store.get_execution("ex-1") == winner


async def test_update_of_an_unknown_execution_raises_conflict(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.update_execution(
            make_execution("ex-1", at=now_ms(), version=1), expected_version=0
        )


async def test_update_whose_new_version_is_not_the_next_raises_value_error(store: Store) -> None:
    at = now_ms()
    await store.insert_execution(make_execution("ex-1", at=at))

    with pytest.raises(ValueError, match="new version must be 1, got 2"):
        await store.update_execution(make_execution("ex-1", at=at, version=2), expected_version=0)

    assert await store.get_execution("ex-1") == make_execution("ex-1", at=at)


async def test_list_executions_is_newest_first(store: Store) -> None:
    at = now_ms()
    for execution_id in ("ex-2", "ex-3", "ex-1"):
        await store.insert_execution(make_execution(execution_id, at=at))

    page = await store.list_executions(ExecutionFilter())

    assert [e.id for e in page.items] == ["ex-3", "ex-2", "ex-1"]
    assert page.next is None


async def test_list_executions_filters_by_every_field_of_the_filter(store: Store) -> None:
    at = now_ms()
    executions = [
        make_execution("ex-1", at=at, namespace="shop", workflow="restart-pod", alert="a/1"),
        make_execution("ex-2", at=at, namespace="shop", workflow="scale-up", state="running"),
        make_execution("ex-3", at=at, namespace="bank", workflow="restart-pod", alert="a/1"),
        make_execution("ex-4", at=at, namespace="shop", workflow="restart-pod", state="running"),
        make_execution(
            "ex-5", at=at, state="failed", finished_at=at, concurrency_key="fp-2", alert="a/1"
        ),
        make_execution("ex-6", at=at, state="cancelled", finished_at=at, concurrency_key="fp-2"),
    ]
    for execution in executions:
        await store.insert_execution(execution)

    async def ids(query: ExecutionFilter) -> list[str]:
        return [e.id for e in (await store.list_executions(query)).items]

    shop_restarts = ExecutionFilter(namespace="shop", workflow="restart-pod")
    assert await ids(ExecutionFilter(namespace="shop")) == ["ex-6", "ex-5", "ex-4", "ex-2", "ex-1"]
    assert await ids(ExecutionFilter(workflow="restart-pod")) == [
        "ex-6",
        "ex-5",
        "ex-4",
        "ex-3",
        "ex-1",
    ]
    assert await ids(ExecutionFilter(state="running")) == ["ex-4", "ex-2"]
    assert await ids(ExecutionFilter(alert_id="a/1")) == ["ex-5", "ex-3", "ex-1"]
    assert await ids(ExecutionFilter(concurrency_key="fp-2")) == ["ex-6", "ex-5"]
    assert await ids(ExecutionFilter(active=True)) == ["ex-4", "ex-3", "ex-2", "ex-1"]
    assert await ids(ExecutionFilter(active=False)) == ["ex-6", "ex-5"]
    assert await ids(shop_restarts) == ["ex-6", "ex-5", "ex-4", "ex-1"]
    assert await ids(shop_restarts.model_copy(update={"active": True})) == ["ex-4", "ex-1"]
    assert await ids(ExecutionFilter(state="running", active=False)) == []
    assert await ids(ExecutionFilter(namespace="shop", state="succeeded")) == []


async def test_count_executions_counts_each_state_present(store: Store) -> None:
    at = now_ms()
    assert await store.count_executions() == {}
    states: list[ExecutionState] = ["pending", "running", "running", "failed", "running"]
    for number, state in enumerate(states):
        finished_at = at if state == "failed" else None
        await store.insert_execution(
            make_execution(f"ex-{number}", at=at, state=state, finished_at=finished_at)
        )

    assert await store.count_executions() == {"pending": 1, "running": 3, "failed": 1}


async def test_exclusive_key_is_held_by_one_unfinished_execution(store: Store) -> None:
    at = now_ms()
    key = "shop/restart-pod/fp-1"
    first = make_execution("ex-1", at=at, exclusive_key=key)
    await store.insert_execution(first)

    with pytest.raises(Conflict):
        await store.insert_execution(make_execution("ex-2", at=at, exclusive_key=key))
    assert await store.get_execution("ex-2") is None

    done = first.model_copy(update={"version": 1, "state": "succeeded", "finished_at": at})
    await store.update_execution(done, expected_version=0)
    finished = await store.get_execution("ex-1")
    assert finished is not None
    assert finished.exclusive_key is None
    assert await store.insert_execution(make_execution("ex-4", at=at, exclusive_key=key)) is True


async def test_same_alert_again_under_a_held_exclusive_key_returns_false(store: Store) -> None:
    at = now_ms()
    first = make_execution("ex-1", at=at, exclusive_key="shop/restart-pod/fp-1")
    await store.insert_execution(first)

    # The same trigger key (a redelivered alert) is a duplicate, whatever else collides.
    assert await store.insert_execution(first.model_copy(update={"id": "ex-2"})) is False
    assert await store.get_execution("ex-2") is None


async def test_update_taking_a_held_exclusive_key_raises_conflict(store: Store) -> None:
    at = now_ms()
    key = "shop/restart-pod/fp-1"
    await store.insert_execution(make_execution("ex-1", at=at, exclusive_key=key))
    queued = make_execution("ex-2", at=at)
    await store.insert_execution(queued)

    with pytest.raises(Conflict):
        await store.update_execution(
            queued.model_copy(update={"version": 1, "exclusive_key": key}), expected_version=0
        )
    assert await store.get_execution("ex-2") == queued


async def test_list_executions_cursor_walks_every_match_exactly_once(store: Store) -> None:
    at = now_ms()
    for number in range(11):
        namespace = "shop" if number % 4 else "bank"
        await store.insert_execution(make_execution(f"ex-{number:02d}", at=at, namespace=namespace))
    expected = [f"ex-{n:02d}" for n in reversed(range(11)) if n % 4]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_executions(
            ExecutionFilter(namespace="shop"), limit=3, cursor=cursor
        )
        pages += 1
        assert len(page.items) <= 3
        seen += [e.id for e in page.items]
        if page.next is None:
            break
        cursor = page.next

    assert seen == expected
    assert pages == 3  # 8 matches: 3 + 3 + 2, and the last page says there is no more


# --- alerts ----------------------------------------------------------------------------


async def test_first_occurrence_creates_the_alert_history(store: Store) -> None:
    at = now_ms()
    received = make_occurrence(at=at, labels={"alertname": "Down", "severity": "critical"})

    record = await store.record_alert(received)

    assert record == AlertRecord(
        id=alert_id("shop", "alertmanager", "fp-1"),
        namespace="shop",
        source="alertmanager",
        fingerprint="fp-1",
        status="firing",
        labels={"alertname": "Down", "severity": "critical"},
        annotations={"summary": "api is crash-looping"},
        starts_at=at - timedelta(minutes=1),
        first_seen=at,
        last_seen=at,
        occurrences=1,
        history=[StatusChange(status="firing", at=at)],
        expire_at=at + RETENTION.alerts,
    )
    assert await store.get_alert(record.id) == record
    assert await store.get_alert("shop/alertmanager/unknown") is None


async def test_repeated_occurrence_counts_and_moves_last_seen(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))

    record = await store.record_alert(make_occurrence(at=at + timedelta(minutes=1)))

    assert record.occurrences == 2
    assert record.first_seen == at
    assert record.last_seen == at + timedelta(minutes=1)
    assert record.status == "firing"
    assert record.history == [StatusChange(status="firing", at=at)]
    assert await store.get_alert(record.id) == record


async def test_resolved_then_firing_again_follows_the_status_with_history(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))

    resolved = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=1), status="resolved")
    )
    refired = await store.record_alert(make_occurrence(at=at + timedelta(minutes=2)))

    assert resolved.status == "resolved"
    assert resolved.ends_at == at + timedelta(minutes=1)
    assert refired.status == "firing"
    assert refired.ends_at is None
    assert refired.history == [
        StatusChange(status="firing", at=at),
        StatusChange(status="resolved", at=at + timedelta(minutes=1)),
        StatusChange(status="firing", at=at + timedelta(minutes=2)),
    ]
    assert refired.occurrences == 3
    assert await store.get_alert(refired.id) == refired


async def test_late_older_notification_is_counted_but_changes_no_status(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))
    resolved = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=2), status="resolved")
    )

    late = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=1), labels={"alertname": "Changed"})
    )

    assert late.occurrences == 3
    assert late.status == "resolved"
    assert late.labels == resolved.labels
    assert late.last_seen == at + timedelta(minutes=2)
    assert late.history == resolved.history
    assert await store.get_alert(late.id) == late


async def test_list_alerts_is_most_recently_seen_first_and_filters(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at, fingerprint="a"))
    await store.record_alert(make_occurrence(at=at + timedelta(seconds=1), fingerprint="b"))
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=2), fingerprint="c", source="grafana")
    )
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=3), fingerprint="d", namespace="bank")
    )
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=4), fingerprint="a", status="resolved")
    )

    async def fingerprints(query: AlertFilter) -> list[str]:
        return [a.fingerprint for a in (await store.list_alerts(query)).items]

    assert await fingerprints(AlertFilter()) == ["a", "d", "c", "b"]
    assert await fingerprints(AlertFilter(status="firing")) == ["d", "c", "b"]
    assert await fingerprints(AlertFilter(status="resolved")) == ["a"]
    assert await fingerprints(AlertFilter(namespace="shop")) == ["a", "c", "b"]
    assert await fingerprints(AlertFilter(source="grafana")) == ["c"]
    assert await fingerprints(AlertFilter(namespace="shop", source="alertmanager")) == ["a", "b"]


LABELLED = {
    "crit": {"alertname": "Down", "severity": "critical"},
    "warn": {"alertname": "Down", "severity": "warning"},
    "empty": {"alertname": "Down", "severity": ""},
    "none": {"alertname": "Slow"},
    "dotted": {"alertname": "Slow", "team.name": "db"},
    "newline": {"alertname": "Odd", "severity": "critical\n"},
}


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        (['severity="critical"'], {"crit"}),
        (["severity=critical"], {"crit"}),
        (['severity="critical\\n"'], {"newline"}),
        (['severity=""'], {"empty", "none", "dotted"}),
        (['severity!="critical"'], {"warn", "empty", "none", "dotted", "newline"}),
        (['severity!=""'], {"crit", "warn", "newline"}),
        (['severity=~"crit.*|warn.*"'], {"crit", "warn"}),
        (['severity=~"crit"'], set()),  # anchored at both ends, like Alertmanager
        (['severity=~"(?i)CRITICAL"'], {"crit"}),  # not "critical\n": the end is the end
        (['severity=~"warning|"'], {"warn", "empty", "none", "dotted"}),
        (['severity=~".*"'], set(LABELLED) - {"newline"}),
        (['severity!~"crit.*"'], {"warn", "empty", "none", "dotted", "newline"}),
        (['severity!~"crit.*|"'], {"warn", "newline"}),
        (['severity!~".+"'], {"empty", "none", "dotted", "newline"}),  # "." stops at \n
        (['alertname="Down"', 'severity!~"warn.*"'], {"crit", "empty"}),
        (['alertname="Slow"', 'alertname!="Down"'], {"none", "dotted"}),
        (['"team.name"="db"'], {"dotted"}),
        (['"team.name"=~"d."', 'alertname="Slow"'], {"dotted"}),
        (['"team.name"!="db"'], {"crit", "warn", "empty", "none", "newline"}),
    ],
)
async def test_list_alerts_applies_label_matchers_as_alertmanager_does(
    store: Store, matchers: list[str], expected: set[str]
) -> None:
    at = now_ms()
    for offset, (fingerprint, labels) in enumerate(LABELLED.items()):
        await store.record_alert(
            make_occurrence(
                at=at + timedelta(seconds=offset), fingerprint=fingerprint, labels=labels
            )
        )

    page = await store.list_alerts(AlertFilter(matchers=matchers))

    assert {a.fingerprint for a in page.items} == expected


async def test_list_alerts_rejects_an_invalid_matcher(store: Store) -> None:
    await store.record_alert(make_occurrence(at=now_ms()))

    with pytest.raises(InvalidInput, match="invalid regular expression"):
        await store.list_alerts(AlertFilter(matchers=['severity=~"(unclosed"']))


@pytest.mark.parametrize(
    "matchers",
    [[], ['alertname="Down"'], ['"team.name"!="db"']],
    ids=["all", "label-matcher", "unusual-label-name"],
)
async def test_list_alerts_cursor_walks_every_match_exactly_once(
    store: Store, matchers: list[str]
) -> None:
    at = now_ms()
    # Pairs seen at the same instant: the cursor must break ties by id.
    for number in range(13):
        labels = {"alertname": "Down" if number % 3 else "Slow"}
        await store.record_alert(
            make_occurrence(
                at=at + timedelta(seconds=number // 2),
                fingerprint=f"fp-{number:02d}",
                labels=labels,
            )
        )
    everything = await store.list_alerts(AlertFilter(matchers=matchers), limit=100)
    expected = [a.id for a in everything.items]
    assert len(expected) == (8 if matchers == ['alertname="Down"'] else 13)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_alerts(AlertFilter(matchers=matchers), limit=3, cursor=cursor)
        assert len(page.items) <= 3
        seen += [a.id for a in page.items]
        if page.next is None:
            break
        cursor = page.next

    assert seen == expected
    keys = [(a.last_seen, a.id) for a in everything.items]
    assert keys == sorted(keys, reverse=True)


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
