"""The store port's contract (`vigil.common.store`), run against both adapters.

Every test runs twice: on SQLite (a file in the test's temporary directory) and on MongoDB
through the real PyMongo driver (mongoeco's wire server, or a real MongoDB when
`VIGIL_TEST_MONGODB_URL` is set), each test in a database of its own. Both stores are opened
through `open_store`, as the services open them. Concurrency tests open several stores on
the same database and race them with `asyncio.gather`. Times are whole milliseconds: BSON
dates keep no finer precision.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from tests.support.documents import ADAPTERS, RETENTION
from tests.support.mongo import drop_database, with_database
from vigil.common.adapters.stores import open_store
from vigil.common.store import Store

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
