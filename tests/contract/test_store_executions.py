"""Store contract, run on both adapters.

Executions: insert, read, compare-and-set, listing, concurrency keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.support.documents import (
    make_execution,
    now_ms,
)
from vigil.common.documents import (
    ExecutionFilter,
    StepRecord,
)
from vigil.common.errors import Conflict
from vigil.common.messages import ExecutionState
from vigil.common.store import Store

pytestmark = pytest.mark.integration

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
