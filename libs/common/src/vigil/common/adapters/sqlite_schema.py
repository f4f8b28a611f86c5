"""The SQLite store's schema, connection set-up and statements (see `sqlite.py`).

The schema is created or checked in one write transaction, so services that open the file
at the same moment never see half of it; every connection runs in WAL mode with a busy
timeout, because several processes share the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from vigil.common.documents import Execution
from vigil.common.errors import InvalidInput

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    workflow TEXT NOT NULL,
    trigger_key TEXT NOT NULL UNIQUE,
    alert_id TEXT NOT NULL,
    concurrency_key TEXT NOT NULL,
    exclusive_key TEXT UNIQUE,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    wake_at TEXT,
    lease_until TEXT,
    lease_owner TEXT,
    expire_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_workflow ON executions (namespace, workflow, id);
CREATE INDEX IF NOT EXISTS executions_state ON executions (state, id);
CREATE INDEX IF NOT EXISTS executions_wake ON executions (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS executions_alert ON executions (alert_id, id);
CREATE INDEX IF NOT EXISTS executions_concurrency
    ON executions (namespace, workflow, concurrency_key, id);
CREATE INDEX IF NOT EXISTS executions_expire ON executions (expire_at) WHERE expire_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    occurrences INTEGER NOT NULL,
    last_seen TEXT NOT NULL,
    expire_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_seen ON alerts (last_seen, id);
CREATE INDEX IF NOT EXISTS alerts_expire ON alerts (expire_at);
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    expire_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_expire ON artifacts (expire_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    at TEXT NOT NULL,
    expire_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (idempotency_key, at);
CREATE INDEX IF NOT EXISTS deliveries_execution ON deliveries (execution_id, at);
CREATE INDEX IF NOT EXISTS deliveries_expire ON deliveries (expire_at);
CREATE TABLE IF NOT EXISTS schedule_ticks (
    id TEXT PRIMARY KEY,
    last_tick TEXT NOT NULL
);
"""

EXPIRING_TABLES = ("executions", "alerts", "artifacts", "deliveries")
SCHEMA_VERSION = 4
# Versions this build upgrades in place: SCHEMA only adds to them (4 added schedule_ticks),
# and every statement of it is `IF NOT EXISTS`.
UPGRADES_FROM = frozenset({3})
ALERT_WRITE_ATTEMPTS = 64
ACTIVE_STATES = "('pending', 'running')"


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/path` or `sqlite:////absolute/path` (SQLAlchemy's convention)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        msg = f"SQLite store URL {url!r} must look like sqlite:///path/to/vigil.db"
        raise InvalidInput(msg)
    return Path(url[len(prefix) :])


def stamp(value: datetime | None) -> str | None:
    """Fixed-width UTC text that sorts like the time it stands for."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unstamp(value: str) -> datetime:
    """The instant a `stamp` stands for."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def check_version(path: Path, version: int, *, tables: int) -> None:
    if tables and version != SCHEMA_VERSION and version not in UPGRADES_FROM:
        msg = (
            f"SQLite store {path} has schema version {version}, this build needs"
            f" {SCHEMA_VERSION}: move the file away (embedded data is disposable)"
        )
        raise InvalidInput(msg)


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Create the schema, or check it, in one write transaction.

    Services open the file at the same time in `vigil up`: the others wait for the lock and
    then see the finished schema with its version, never tables without one.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        async with db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'") as cursor:
            row = await cursor.fetchone()
        check_version(path, version, tables=int(row[0]) if row else 0)
        if version != SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


INSERT_EXECUTION = (
    "INSERT INTO executions (id, namespace, workflow, trigger_key, alert_id, concurrency_key,"
    " exclusive_key, state, version, wake_at, expire_at, doc)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_EXECUTION = (
    "UPDATE executions SET state = ?, version = ?, wake_at = ?, expire_at = ?,"
    " exclusive_key = ?, lease_until = NULL, lease_owner = NULL, doc = ?"
    " WHERE id = ? AND version = ?"
)
MAX_VARIABLES = 500
LOCKED_RETRIES = 12
LOCKED_RETRY_START_SECONDS = 0.002
LOCKED_RETRY_MAX_SECONDS = 0.1


def execution_row(execution: Execution) -> tuple[object, ...]:
    return (
        execution.id,
        execution.namespace,
        execution.workflow,
        execution.trigger_key,
        execution.alert_id,
        execution.concurrency_key,
        execution.exclusive_key,
        execution.state,
        execution.version,
        stamp(execution.wake_at),
        stamp(execution.expire_at),
        execution.model_dump_json(),
    )


def chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), MAX_VARIABLES):
        yield values[start : start + MAX_VARIABLES]


async def connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, timeout=10.0, isolation_level=None)
    try:
        await db.execute("PRAGMA busy_timeout=10000")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        await db.close()
        raise
    return db
