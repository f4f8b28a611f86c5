"""An embedded store written by the previous schema version opens in place and gains what
this one adds; a version this build cannot upgrade is refused naming the file."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.common.adapters.sqlite_schema import SCHEMA, SCHEMA_VERSION
from vigil.common.errors import InvalidInput
from vigil.common.testing import sqlite_store


def write_old_store(folder: Path, *, version: int) -> None:
    """The file as version 3 left it: every table but schedule_ticks."""
    schema = SCHEMA.split("CREATE TABLE IF NOT EXISTS schedule_ticks")[0]
    with contextlib.closing(sqlite3.connect(folder / "vigil.db")) as db:
        db.executescript(schema)
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()


async def test_a_version_3_store_is_upgraded_in_place(tmp_path: Path) -> None:
    write_old_store(tmp_path, version=3)
    async with sqlite_store(tmp_path) as store:
        tick = datetime(2026, 12, 2, 7, tzinfo=UTC)
        assert await store.claim_tick("ops/daily", tick)
        assert not await store.claim_tick("ops/daily", tick)
    with contextlib.closing(sqlite3.connect(tmp_path / "vigil.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_an_unknown_older_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    write_old_store(tmp_path, version=1)
    with pytest.raises(InvalidInput, match=r"schema version 1, this build needs"):
        async with sqlite_store(tmp_path):
            pass
