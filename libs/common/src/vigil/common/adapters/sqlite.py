"""SQLite adapter of the store port, for embedded mode.

Several processes share one database file (engine writes executions and alerts, sink writes
deliveries, executor artifacts, ingest reads), so it runs in WAL mode with a busy timeout.
Documents are stored as JSON beside the columns that are queried; timestamps as fixed-width
UTC strings so that they compare in order. `sqlite3` errors become TransientError here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import cast

import aiosqlite

from vigil.common.adapters.sqlite_schema import (
    ACTIVE_STATES,
    ALERT_WRITE_ATTEMPTS,
    EXPIRING_TABLES,
    INSERT_EXECUTION,
    LOCKED_RETRIES,
    LOCKED_RETRY_MAX_SECONDS,
    LOCKED_RETRY_START_SECONDS,
    UPDATE_EXECUTION,
    chunks,
    connect,
    execution_row,
    migrate,
    sqlite_path,
    stamp,
    unstamp,
)
from vigil.common.documents import (
    AlertFilter,
    AlertPage,
    AlertRecord,
    Artifact,
    DeliveryRecord,
    Execution,
    ExecutionFilter,
    ExecutionPage,
    alert_id,
)
from vigil.common.errors import Conflict, TransientError
from vigil.common.history import merge_occurrence
from vigil.common.matchers import Matcher, parse_matcher
from vigil.common.messages import AlertReceived
from vigil.common.scanning import SCAN_BATCH, LabelScan
from vigil.common.store import Retention, with_expiry

# A row of the alert listing: last_seen (as stored), id, the labels as JSON, the document.
type AlertRow = tuple[str, str, str, str]


class SqliteStore:
    def __init__(
        self, db: aiosqlite.Connection, batch_db: aiosqlite.Connection, retention: Retention
    ) -> None:
        self._db = db
        # Batches run as one transaction on a connection of their own, so that nothing the
        # main connection does can land inside (or be rolled back with) a batch.
        self._batch_db = batch_db
        self._batch_lock = asyncio.Lock()
        self._retention = retention

    @classmethod
    async def open(cls, url: str, *, retention: Retention) -> SqliteStore:
        path = sqlite_path(url)
        delay = LOCKED_RETRY_START_SECONDS
        for attempt in range(1, LOCKED_RETRIES + 1):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = await connect(path)
                try:
                    await migrate(db, path)
                    batch_db = await connect(path)
                except BaseException:
                    await db.close()
                    raise
            except sqlite3.OperationalError as exc:
                # Several services open (and create) the file at once in `vigil up`:
                # switching it to WAL or creating tables can find it locked for a moment.
                if "locked" not in str(exc) or attempt == LOCKED_RETRIES:
                    msg = f"cannot open SQLite store at {path}: {exc}"
                    raise TransientError(msg) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, LOCKED_RETRY_MAX_SECONDS * 5)
            except (sqlite3.Error, OSError) as exc:
                msg = f"cannot open SQLite store at {path}: {exc}"
                raise TransientError(msg) from exc
            else:
                return cls(db, batch_db, retention)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        await self._batch_db.close()
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _batch(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction on the batch connection (BEGIN IMMEDIATE … COMMIT)."""
        async with self._batch_lock:
            db = self._batch_db
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                msg = f"SQLite store: cannot {what}: {exc}"
                raise TransientError(msg) from exc

    async def ping(self) -> None:
        await self._run("SELECT 1", (), "ping")

    async def _run(
        self, query: str, params: tuple[object, ...] | list[object], what: str
    ) -> aiosqlite.Cursor:
        return await self._retried(partial(self._db.execute, query, params), what)

    async def _rows(
        self, query: str, params: tuple[object, ...] | list[object], what: str
    ) -> list[sqlite3.Row]:
        """Every row of `query`, read in the connection's thread in one hop."""
        return list(await self._retried(partial(self._db.execute_fetchall, query, params), what))

    async def _retried[R](self, call: Callable[[], Awaitable[R]], what: str) -> R:
        delay = LOCKED_RETRY_START_SECONDS
        for _ in range(LOCKED_RETRIES):
            try:
                return await call()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.OperationalError as exc:
                # In WAL mode a write statement whose read snapshot went stale while it
                # waited for the write lock fails at once, without the busy timeout: it is
                # safe to run it again, here rather than by redelivering the message.
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise TransientError(f"SQLite store: cannot {what}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, LOCKED_RETRY_MAX_SECONDS)
            except sqlite3.Error as exc:
                raise TransientError(f"SQLite store: cannot {what}: {exc}") from exc
        msg = f"SQLite store: cannot {what}: the database stayed locked"
        raise TransientError(msg)

    async def _docs(self, query: str, params: list[object], what: str) -> list[str]:
        return [row[0] for row in await self._rows(query, params, what)]

    # --- alerts --------------------------------------------------------------------------

    async def record_alert(self, received: AlertReceived) -> AlertRecord:
        """Read, merge, write guarded by the occurrence count (optimistic, any process)."""
        identity = alert_id(received.namespace, received.source, received.alert.fingerprint)
        for _ in range(ALERT_WRITE_ATTEMPTS):
            found = await self._docs("SELECT doc FROM alerts WHERE id = ?", [identity], "read")
            previous = AlertRecord.model_validate_json(found[0]) if found else None
            record = merge_occurrence(previous, received, identity=identity)
            record = record.model_copy(
                update={"expire_at": record.last_seen + self._retention.alerts}
            )
            columns = (
                record.status,
                stamp(record.last_seen),
                stamp(record.expire_at),
                record.model_dump_json(),
            )
            if previous is None:
                cursor = await self._run(
                    "INSERT INTO alerts (status, last_seen, expire_at, doc, id, namespace,"
                    " source, occurrences) VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
                    " ON CONFLICT (id) DO NOTHING",
                    (*columns, record.id, record.namespace, record.source),
                    f"record alert {identity}",
                )
            else:
                cursor = await self._run(
                    "UPDATE alerts SET status = ?, last_seen = ?, expire_at = ?, doc = ?,"
                    " occurrences = occurrences + 1 WHERE id = ? AND occurrences = ?",
                    (*columns, record.id, previous.occurrences),
                    f"record alert {identity}",
                )
            if cursor.rowcount == 1:
                return record
        msg = f"alert {identity}: lost the race to record it {ALERT_WRITE_ATTEMPTS} times"
        raise Conflict(msg)

    async def record_alerts(self, received: Sequence[AlertReceived]) -> list[AlertRecord]:
        if not received:
            return []
        identities = [
            alert_id(item.namespace, item.source, item.alert.fingerprint) for item in received
        ]
        records: list[AlertRecord] = []
        async with self._batch("record alerts") as db:
            latest: dict[str, AlertRecord] = {}
            for chunk in chunks(sorted(set(identities))):
                marks = ",".join("?" * len(chunk))
                for (doc,) in await db.execute_fetchall(
                    f"SELECT doc FROM alerts WHERE id IN ({marks})",  # noqa: S608 - placeholders
                    chunk,
                ):
                    found = AlertRecord.model_validate_json(doc)
                    latest[found.id] = found
            for identity, item in zip(identities, received, strict=True):
                record = merge_occurrence(latest.get(identity), item, identity=identity)
                record = record.model_copy(
                    update={"expire_at": record.last_seen + self._retention.alerts}
                )
                latest[identity] = record
                records.append(record)
            await db.executemany(
                "INSERT INTO alerts (status, last_seen, expire_at, doc, id, namespace, source,"
                " occurrences) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " status = excluded.status, last_seen = excluded.last_seen,"
                " expire_at = excluded.expire_at, doc = excluded.doc,"
                " occurrences = excluded.occurrences",
                [
                    (
                        r.status,
                        stamp(r.last_seen),
                        stamp(r.expire_at),
                        r.model_dump_json(),
                        r.id,
                        r.namespace,
                        r.source,
                        r.occurrences,
                    )
                    for r in latest.values()
                ],
            )
        return records

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        found = await self._docs("SELECT doc FROM alerts WHERE id = ?", [alert_id], "read alert")
        return AlertRecord.model_validate_json(found[0]) if found else None

    async def list_alerts(
        self, query: AlertFilter, *, limit: int = 50, cursor: str | None = None
    ) -> AlertPage:
        matchers = [parse_matcher(m) for m in query.matchers]  # InvalidInput, not SQL errors
        clauses: list[str] = []
        params: list[object] = []
        for column in ("namespace", "source", "status"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if matchers:
            rows, resume = await self._scan_alerts(matchers, clauses, params, limit, cursor)
        else:
            rows = await self._alert_rows(clauses, params, cursor, limit + 1)
            rows, resume = rows[:limit], rows[limit - 1] if len(rows) > limit else None
        return AlertPage(
            items=[AlertRecord.model_validate_json(doc) for _, _, _, doc in rows],
            next=f"{resume[0]}|{resume[1]}" if resume is not None else None,
        )

    async def _scan_alerts(
        self,
        matchers: list[Matcher],
        clauses: list[str],
        params: list[object],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[AlertRow], AlertRow | None]:
        """Matchers run here, in RE2, in a worker thread, over a bounded scan (see
        `vigil.common.scanning`): never in SQL, never on the event loop."""
        scan: LabelScan[AlertRow] = LabelScan(matchers=matchers, limit=limit)
        while not scan.done:
            rows = await self._alert_rows(clauses, params, cursor, SCAN_BATCH)
            await asyncio.to_thread(scan.feed, ((json.loads(r[2]), r) for r in rows))
            if len(rows) < SCAN_BATCH:
                break
            cursor = f"{rows[-1][0]}|{rows[-1][1]}"
        return scan.page()

    async def _alert_rows(
        self, clauses: list[str], params: list[object], cursor: str | None, limit: int
    ) -> list[AlertRow]:
        """(last_seen, id, labels as JSON, doc) in listing order, after `cursor`."""
        if cursor is not None:
            seen, _, after = cursor.partition("|")
            clauses = [*clauses, "(last_seen < ? OR (last_seen = ? AND id < ?))"]
            params = [*params, seen, seen, after]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        statement = (
            "SELECT last_seen, id, json_extract(doc, '$.labels'), doc"  # noqa: S608 - fixed columns
            f" FROM alerts {where} ORDER BY last_seen DESC, id DESC LIMIT ?"
        )
        rows = await self._rows(statement, [*params, limit], "list alerts")
        return [cast(AlertRow, tuple(row)) for row in rows]

    # --- executions ----------------------------------------------------------------------

    async def insert_execution(self, execution: Execution) -> bool:
        execution = with_expiry(execution, self._retention)
        try:
            await self._run(
                INSERT_EXECUTION, execution_row(execution), f"insert execution {execution.id}"
            )
        except sqlite3.IntegrityError as exc:
            # The trigger key decides first: the same occurrence again is not an error,
            # whichever constraint SQLite happened to report.
            if await self.find_by_trigger_key(execution.trigger_key) is not None:
                return False
            if "exclusive_key" in str(exc):
                msg = f"another execution holds concurrency key {execution.exclusive_key}"
                raise Conflict(msg) from exc
            msg = f"SQLite store: cannot insert execution {execution.id}: {exc}"
            raise TransientError(msg) from exc
        return True

    async def insert_executions(self, executions: Sequence[Execution]) -> list[bool]:
        if any(e.exclusive_key is not None for e in executions):
            raise ValueError("insert executions with a concurrency key one by one")
        if not executions:
            return []
        prepared = [with_expiry(e, self._retention) for e in executions]
        async with self._batch("insert executions") as db:
            taken: set[str] = set()
            for chunk in chunks(sorted({e.trigger_key for e in prepared})):
                marks = ",".join("?" * len(chunk))
                taken |= {
                    key
                    for (key,) in await db.execute_fetchall(
                        f"SELECT trigger_key FROM executions WHERE trigger_key IN ({marks})",  # noqa: S608 - placeholders
                        chunk,
                    )
                }
            inserted: list[bool] = []
            rows = []
            for execution in prepared:
                new = execution.trigger_key not in taken
                inserted.append(new)
                if new:
                    taken.add(execution.trigger_key)
                    rows.append(execution_row(execution))
            await db.executemany(INSERT_EXECUTION, rows)
        return inserted

    async def get_execution(self, execution_id: str) -> Execution | None:
        found = await self._docs(
            "SELECT doc FROM executions WHERE id = ?", [execution_id], "read execution"
        )
        return Execution.model_validate_json(found[0]) if found else None

    async def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        found: dict[str, Execution] = {}
        for chunk in chunks(sorted(set(execution_ids))):
            marks = ",".join("?" * len(chunk))
            docs = await self._docs(
                f"SELECT doc FROM executions WHERE id IN ({marks})",  # noqa: S608 - placeholders
                list(chunk),
                "read executions",
            )
            for doc in docs:
                execution = Execution.model_validate_json(doc)
                found[execution.id] = execution
        return found

    async def update_executions(self, updates: Sequence[tuple[Execution, int]]) -> list[bool]:
        for execution, expected in updates:
            if execution.version != expected + 1:
                msg = f"new version must be {expected + 1}, got {execution.version}"
                raise ValueError(msg)
        if not updates:
            return []
        prepared = [
            (with_expiry(execution, self._retention), expected) for execution, expected in updates
        ]
        async with self._batch("update executions") as db:
            current: dict[str, int] = {}
            for chunk in chunks(sorted({e.id for e, _ in prepared})):
                marks = ",".join("?" * len(chunk))
                current |= {
                    str(i): int(v)
                    for i, v in await db.execute_fetchall(
                        f"SELECT id, version FROM executions WHERE id IN ({marks})",  # noqa: S608 - placeholders
                        chunk,
                    )
                }
            saved = []
            rows = []
            for execution, expected in prepared:
                fresh = current.get(execution.id) == expected
                saved.append(fresh)
                if fresh:
                    current[execution.id] = execution.version
                    rows.append(
                        (
                            execution.state,
                            execution.version,
                            stamp(execution.wake_at),
                            stamp(execution.expire_at),
                            execution.exclusive_key,
                            execution.model_dump_json(),
                            execution.id,
                            expected,
                        )
                    )
            await db.executemany(UPDATE_EXECUTION, rows)
        return saved

    async def find_by_trigger_key(self, trigger_key: str) -> Execution | None:
        found = await self._docs(
            "SELECT doc FROM executions WHERE trigger_key = ?", [trigger_key], "read execution"
        )
        return Execution.model_validate_json(found[0]) if found else None

    async def update_execution(self, execution: Execution, *, expected_version: int) -> None:
        if execution.version != expected_version + 1:
            msg = f"new version must be {expected_version + 1}, got {execution.version}"
            raise ValueError(msg)
        execution = with_expiry(execution, self._retention)
        try:
            cursor = await self._run(
                UPDATE_EXECUTION,
                (
                    execution.state,
                    execution.version,
                    stamp(execution.wake_at),
                    stamp(execution.expire_at),
                    execution.exclusive_key,
                    execution.model_dump_json(),
                    execution.id,
                    expected_version,
                ),
                f"update execution {execution.id}",
            )
        except sqlite3.IntegrityError as exc:
            msg = f"another execution holds concurrency key {execution.exclusive_key}"
            raise Conflict(msg) from exc
        if cursor.rowcount != 1:
            msg = f"execution {execution.id} is no longer at version {expected_version}"
            raise Conflict(msg)

    async def list_executions(
        self, query: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> ExecutionPage:
        clauses: list[str] = []
        params: list[object] = []
        for column in ("namespace", "workflow", "state", "alert_id", "concurrency_key"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.active is not None:
            clauses.append(f"state {'IN' if query.active else 'NOT IN'} {ACTIVE_STATES}")
        if cursor is not None:
            clauses.append("id < ?")
            params.append(cursor)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        docs = await self._docs(
            f"SELECT doc FROM executions {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 - fixed column names
            [*params, limit + 1],
            "list executions",
        )
        items = [Execution.model_validate_json(doc) for doc in docs[:limit]]
        return ExecutionPage(items=items, next=items[-1].id if len(docs) > limit else None)

    async def count_executions(self) -> dict[str, int]:
        rows = await self._rows(
            "SELECT state, count(*) FROM executions GROUP BY state", (), "count executions"
        )
        return {str(state): int(count) for state, count in rows}

    async def claim_due(
        self, now: datetime, *, owner: str, lease: timedelta, limit: int = 100
    ) -> list[Execution]:
        # One UPDATE … RETURNING holds SQLite's write lock: no other process can claim the
        # same rows in between.
        docs = await self._docs(
            "UPDATE executions SET lease_until = ?, lease_owner = ? WHERE id IN ("
            " SELECT id FROM executions WHERE wake_at IS NOT NULL AND wake_at <= ?"
            " AND state IN ('pending', 'running')"
            " AND (lease_until IS NULL OR lease_until < ?) ORDER BY wake_at LIMIT ?"
            ") RETURNING doc",
            [stamp(now + lease), owner, stamp(now), stamp(now), limit],
            "claim due timers",
        )
        return sorted(
            (Execution.model_validate_json(doc) for doc in docs),
            key=lambda e: (e.wake_at or now, e.id),
        )

    # --- artifacts and deliveries --------------------------------------------------------

    async def put_artifact(self, artifact: Artifact) -> None:
        artifact = artifact.model_copy(
            update={"expire_at": artifact.created_at + self._retention.artifacts}
        )
        await self._run(
            "INSERT OR REPLACE INTO artifacts (id, execution_id, expire_at, doc)"
            " VALUES (?, ?, ?, ?)",
            (
                artifact.id,
                artifact.execution_id,
                stamp(artifact.expire_at),
                artifact.model_dump_json(),
            ),
            f"store artifact {artifact.id}",
        )

    async def get_artifact(self, artifact_id: str) -> Artifact | None:
        found = await self._docs(
            "SELECT doc FROM artifacts WHERE id = ?", [artifact_id], "read artifact"
        )
        return Artifact.model_validate_json(found[0]) if found else None

    async def record_delivery(self, delivery: DeliveryRecord) -> None:
        delivery = delivery.model_copy(
            update={"expire_at": delivery.at + self._retention.deliveries}
        )
        await self._run(
            "INSERT OR REPLACE INTO deliveries (id, idempotency_key, execution_id, at,"
            " expire_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
            (
                delivery.id,
                delivery.idempotency_key,
                delivery.execution_id,
                stamp(delivery.at),
                stamp(delivery.expire_at),
                delivery.model_dump_json(),
            ),
            f"record delivery {delivery.id}",
        )

    async def deliveries(
        self, *, execution_id: str | None = None, idempotency_key: str | None = None
    ) -> list[DeliveryRecord]:
        if (execution_id is None) == (idempotency_key is None):
            raise ValueError("give exactly one of execution_id and idempotency_key")
        column = "execution_id" if execution_id is not None else "idempotency_key"
        docs = await self._docs(
            f"SELECT doc FROM deliveries WHERE {column} = ? ORDER BY at, id",  # noqa: S608 - fixed column names
            [execution_id or idempotency_key],
            "list deliveries",
        )
        return [DeliveryRecord.model_validate_json(doc) for doc in docs]

    # --- schedule ticks ------------------------------------------------------------------

    async def claim_tick(self, schedule: str, tick: datetime) -> bool:
        # One statement: the conditional upsert holds the write lock, so of two processes
        # claiming the same tick one changes the row and the other changes nothing.
        cursor = await self._run(
            "INSERT INTO schedule_ticks (id, last_tick) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET last_tick = excluded.last_tick"
            " WHERE schedule_ticks.last_tick < excluded.last_tick",
            (schedule, stamp(tick)),
            f"claim tick of schedule {schedule}",
        )
        return cursor.rowcount == 1

    async def last_ticks(self) -> dict[str, datetime]:
        rows = await self._rows(
            "SELECT id, last_tick FROM schedule_ticks", (), "read schedule ticks"
        )
        return {str(key): unstamp(str(value)) for key, value in rows}

    # --- retention -----------------------------------------------------------------------

    async def purge(self, now: datetime) -> int:
        removed = 0
        for table in EXPIRING_TABLES:
            cursor = await self._run(
                f"DELETE FROM {table} WHERE expire_at IS NOT NULL AND expire_at <= ?",  # noqa: S608 - fixed table names
                (stamp(now),),
                f"purge {table}",
            )
            removed += max(cursor.rowcount, 0)
        return removed
