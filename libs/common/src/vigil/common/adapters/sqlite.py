"""SQLite adapter of the store port, for embedded mode.

Several processes share one database file (engine writes, ingest reads), so the database
runs in WAL mode with a busy timeout. Documents are stored as JSON next to the columns that
are queried (trigger key, state, workflow); `sqlite3` errors become TransientError (locked,
I/O) at this boundary.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from vigil.common.documents import (
    AlertRecord,
    Execution,
    ExecutionFilter,
    ExecutionPage,
    StatusChange,
)
from vigil.common.errors import Conflict, InvalidInput, TransientError
from vigil.common.messages import AlertReceived

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    workflow TEXT NOT NULL,
    trigger_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    wake_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_workflow ON executions (namespace, workflow, id);
CREATE INDEX IF NOT EXISTS executions_state ON executions (state, wake_at);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (namespace, source, fingerprint)
);
"""


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/path` or `sqlite:////absolute/path` (SQLAlchemy's convention)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        msg = f"SQLite store URL {url!r} must look like sqlite:///path/to/vigil.db"
        raise InvalidInput(msg)
    return Path(url[len(prefix) :])


class SqliteStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # record_alert reads then writes; one writer per alert id at a time in-process.
        self._alert_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        path = sqlite_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path, timeout=10.0, isolation_level=None)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=10000")
            await db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            msg = f"cannot open SQLite store at {path}: {exc}"
            raise TransientError(msg) from exc
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        try:
            await self._db.execute("SELECT 1")
        except sqlite3.Error as exc:
            raise TransientError(f"SQLite store does not answer: {exc}") from exc

    # --- alerts --------------------------------------------------------------------------

    async def record_alert(self, received: AlertReceived) -> AlertRecord:
        alert = received.alert
        alert_id = f"{received.namespace}/{received.source}/{alert.fingerprint}"
        now = received.received_at
        async with self._alert_lock:
            return await self._record_alert(received, alert_id, now)

    async def _record_alert(
        self, received: AlertReceived, alert_id: str, now: datetime
    ) -> AlertRecord:
        alert = received.alert
        try:
            async with self._db.execute(
                "SELECT doc FROM alerts WHERE id = ?", (alert_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                record = AlertRecord(
                    id=alert_id,
                    namespace=received.namespace,
                    source=received.source,
                    fingerprint=alert.fingerprint,
                    status=alert.status,
                    labels=alert.labels,
                    annotations=alert.annotations,
                    starts_at=alert.starts_at,
                    ends_at=alert.ends_at,
                    first_seen=now,
                    last_seen=now,
                    history=[StatusChange(status=alert.status, at=now)],
                )
            else:
                previous = AlertRecord.model_validate_json(row[0])
                history = previous.history
                if previous.status != alert.status:
                    history = [*history, StatusChange(status=alert.status, at=now)]
                record = previous.model_copy(
                    update={
                        "status": alert.status,
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "starts_at": alert.starts_at,
                        "ends_at": alert.ends_at,
                        "last_seen": max(now, previous.last_seen),
                        "occurrences": previous.occurrences + 1,
                        "history": history,
                    }
                )
            await self._db.execute(
                "INSERT INTO alerts (id, namespace, source, fingerprint, status, last_seen, doc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " status = excluded.status, last_seen = excluded.last_seen, doc = excluded.doc",
                (
                    record.id,
                    record.namespace,
                    record.source,
                    record.fingerprint,
                    record.status,
                    record.last_seen.isoformat(),
                    record.model_dump_json(),
                ),
            )
        except sqlite3.Error as exc:
            raise TransientError(f"cannot record alert {alert_id}: {exc}") from exc
        return record

    # --- executions ----------------------------------------------------------------------

    async def insert_execution(self, execution: Execution) -> bool:
        try:
            await self._db.execute(
                "INSERT INTO executions (id, namespace, workflow, trigger_key, state, version,"
                " wake_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                _row(execution),
            )
        except sqlite3.IntegrityError as exc:
            if "trigger_key" in str(exc):
                return False
            raise TransientError(f"cannot insert execution {execution.id}: {exc}") from exc
        except sqlite3.Error as exc:
            raise TransientError(f"cannot insert execution {execution.id}: {exc}") from exc
        return True

    async def get_execution(self, execution_id: str) -> Execution | None:
        return await self._one("SELECT doc FROM executions WHERE id = ?", execution_id)

    async def find_by_trigger_key(self, trigger_key: str) -> Execution | None:
        return await self._one("SELECT doc FROM executions WHERE trigger_key = ?", trigger_key)

    async def _one(self, query: str, value: str) -> Execution | None:
        try:
            async with self._db.execute(query, (value,)) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise TransientError(f"cannot read execution: {exc}") from exc
        return None if row is None else Execution.model_validate_json(row[0])

    async def update_execution(self, execution: Execution, *, expected_version: int) -> None:
        if execution.version != expected_version + 1:
            msg = f"new version must be {expected_version + 1}, got {execution.version}"
            raise ValueError(msg)
        try:
            cursor = await self._db.execute(
                "UPDATE executions SET state = ?, version = ?, wake_at = ?, doc = ?"
                " WHERE id = ? AND version = ?",
                (
                    execution.state,
                    execution.version,
                    _iso(execution.wake_at),
                    execution.model_dump_json(),
                    execution.id,
                    expected_version,
                ),
            )
        except sqlite3.Error as exc:
            raise TransientError(f"cannot update execution {execution.id}: {exc}") from exc
        if cursor.rowcount != 1:
            msg = f"execution {execution.id} is no longer at version {expected_version}"
            raise Conflict(msg)

    async def list_executions(
        self, query: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> ExecutionPage:
        clauses: list[str] = []
        params: list[str | int] = []
        for column in ("namespace", "workflow", "state"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if cursor is not None:
            clauses.append("id < ?")
            params.append(cursor)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        try:
            async with self._db.execute(
                f"SELECT doc FROM executions {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 - columns are fixed names
                params,
            ) as rows:
                docs = [Execution.model_validate_json(row[0]) for row in await rows.fetchall()]
        except sqlite3.Error as exc:
            raise TransientError(f"cannot list executions: {exc}") from exc
        more = len(docs) > limit
        items = docs[:limit]
        return ExecutionPage(items=items, next=items[-1].id if more else None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _row(execution: Execution) -> tuple[str | int | None, ...]:
    return (
        execution.id,
        execution.namespace,
        execution.workflow,
        execution.trigger_key,
        execution.state,
        execution.version,
        _iso(execution.wake_at),
        execution.model_dump_json(),
    )
