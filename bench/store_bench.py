"""Store operations per second, SQLite and MongoDB (`make bench-store`).

Runs the same workload through the store port against both adapters: SQLite on a file in a
temporary directory, MongoDB through the real PyMongo driver to mongoeco's wire server in a
subprocess (in memory), or to the MongoDB named by `VIGIL_TEST_MONGODB_URL`. Prints a table
and writes it to `docs/benchmarks.md` under "## Store operations per second", keeping the
other sections. A measurement, not a test: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.document import DOCUMENT, write_section
from bench.platform_report import machine
from tests.support.mongo import drop_database, running_mongoeco, with_database
from vigil.common.adapters.stores import open_store
from vigil.common.documents import Execution, ExecutionFilter, StepRecord
from vigil.common.messages import Alert, AlertReceived
from vigil.common.store import Retention, Store

N = 2000  # operations of each kind (`--n` to change)
LIST_PAGES = 200
CLAIM_BATCH = 100
CONCURRENT_TASKS = 8
ALERT_FINGERPRINTS = 200  # 2000 occurrences of 200 alerts: first sightings and repeats
SECTION = "## Store operations per second"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    operation: str
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else float("inf")


def make_execution(number: int, *, at: datetime, prefix: str) -> Execution:
    return Execution(
        id=f"{prefix}-{number:06d}",
        namespace="bench",
        workflow="restart-pod",
        source="alertmanager",
        alert_id=f"bench/alertmanager/fp-{number % ALERT_FINGERPRINTS}",
        trigger_key=f"{prefix}/trigger-{number}",
        concurrency_key=f"fp-{number}",
        alert=Alert(
            status="firing",
            fingerprint=f"fp-{number}",
            labels={"alertname": "KubePodCrashLooping", "severity": "critical", "pod": "api"},
            annotations={"summary": "api is crash-looping"},
            starts_at=at,
        ),
        created_at=at,
        updated_at=at,
        wake_at=at - timedelta(seconds=number % 60),
        steps=[StepRecord(name="restart", kind="cli"), StepRecord(name="notify", kind="notify")],
    )


def make_occurrence(number: int, *, at: datetime) -> AlertReceived:
    return AlertReceived(
        namespace="bench",
        source="alertmanager",
        received_at=at + timedelta(milliseconds=number),
        alert=Alert(
            status="firing" if number % 7 else "resolved",
            fingerprint=f"fp-{number % ALERT_FINGERPRINTS}",
            labels={"alertname": "KubePodCrashLooping", "severity": "critical"},
            starts_at=at,
        ),
    )


async def timed(operation: str, count: int, work: Callable[[], Awaitable[None]]) -> Measurement:
    started = time.perf_counter()
    await work()
    return Measurement(operation=operation, count=count, seconds=time.perf_counter() - started)


async def run_workload(store: Store, n: int) -> list[Measurement]:
    at = datetime.now(UTC)
    executions = [make_execution(number, at=at, prefix="serial") for number in range(n)]
    results: list[Measurement] = []

    async def insert() -> None:
        for execution in executions:
            assert await store.insert_execution(execution)

    async def get() -> None:
        for execution in executions:
            assert await store.get_execution(execution.id) is not None

    async def claim() -> None:
        claimed = 0
        while batch := await store.claim_due(
            at, owner="bench", lease=timedelta(minutes=5), limit=CLAIM_BATCH
        ):
            claimed += len(batch)
        assert claimed == n, claimed

    async def update() -> None:
        for execution in executions:
            running = execution.model_copy(update={"version": 1, "state": "running"})
            await store.update_execution(running, expected_version=0)

    async def record() -> None:
        for number in range(n):
            await store.record_alert(make_occurrence(number, at=at))

    async def page() -> None:
        cursor: str | None = None
        for _ in range(LIST_PAGES):
            listed = await store.list_executions(ExecutionFilter(), limit=50, cursor=cursor)
            cursor = listed.next

    concurrent = [make_execution(number, at=at, prefix="concurrent") for number in range(n)]

    async def insert_concurrently() -> None:
        async def one_task(share: list[Execution]) -> None:
            for execution in share:
                assert await store.insert_execution(execution)

        async with asyncio.TaskGroup() as group:
            for task in range(CONCURRENT_TASKS):
                group.create_task(one_task(concurrent[task::CONCURRENT_TASKS]))

    results.append(await timed("insert_execution", n, insert))
    results.append(await timed("get_execution", n, get))
    results.append(await timed(f"claim_due (batches of {CLAIM_BATCH}), executions", n, claim))
    results.append(await timed("update_execution (CAS)", n, update))
    results.append(await timed("record_alert", n, record))
    results.append(await timed("list_executions (page of 50)", LIST_PAGES, page))
    results.append(
        await timed(f"insert_execution, {CONCURRENT_TASKS} tasks", n, insert_concurrently)
    )
    return results


@contextlib.contextmanager
def mongodb_server(work_dir: Path) -> Iterator[tuple[str, str]]:
    """A MongoDB URL with a fresh database, and what it is (for the table)."""
    real = os.environ.get("VIGIL_TEST_MONGODB_URL")
    if real:
        url = with_database(real, f"vigil_bench_{uuid.uuid4().hex}")
        try:
            yield url, "MongoDB (VIGIL_TEST_MONGODB_URL)"
        finally:
            drop_database(url)
        return
    with running_mongoeco(work_dir) as server:
        yield with_database(server.url, "vigil_bench"), "MongoDB (mongoeco wire server, memory)"


async def bench(url: str, n: int) -> list[Measurement]:
    store = await open_store(url, retention=Retention())
    try:
        return await run_workload(store, n)
    finally:
        await store.close()


def table(columns: dict[str, list[Measurement]]) -> str:
    names = list(columns)
    operations = [m.operation for m in next(iter(columns.values()))]
    lines = [
        "| operation | n | " + " | ".join(f"{name} ops/s" for name in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for row, operation in enumerate(operations):
        figures = " | ".join(f"{columns[name][row].per_second:,.0f}" for name in names)
        lines.append(f"| {operation} | {columns[names[0]][row].count} | {figures} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Store operations per second.")
    parser.add_argument("--n", type=int, default=N, help="operations of each kind")
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        work_dir = Path(tmp)
        columns = {"SQLite": asyncio.run(bench(f"sqlite:///{work_dir / 'vigil.db'}", n))}
        with mongodb_server(work_dir / "mongo") as (url, label):
            columns["MongoDB"] = asyncio.run(bench(url, n))
    rendered = table(columns)
    print(rendered)
    body = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, Python "
            f"{platform.python_version()}; command: `make bench-store`.",
            "",
            "One store, one asyncio task (the last row: 8 tasks sharing the store). SQLite: a"
            " WAL file in a temporary directory. MongoDB: " + label + ", through PyMongo's"
            " AsyncMongoClient over loopback. claim_due counts executions claimed, in batches"
            " of 100; record_alert mixes first sightings and repeats of 200 alerts.",
            "",
            rendered,
        ]
    )
    write_section(SECTION, body)
    print(f"\nwritten to {DOCUMENT}")


if __name__ == "__main__":
    main()
