"""The store port: what services need from the document store, nothing more.

Two adapters implement it: SQLite (`vigil.common.adapters.sqlite`, embedded) and MongoDB
(production). Both translate their driver's errors into `TransientError` (retry the
message) or `PermanentError`, and both give the same semantics: a unique trigger key,
compare-and-set on the execution version, newest-first cursor pagination.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlparse

from vigil.common.documents import (
    AlertRecord,
    Execution,
    ExecutionFilter,
    ExecutionPage,
)
from vigil.common.errors import InvalidInput
from vigil.common.messages import AlertReceived


class Store(Protocol):
    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""

    async def close(self) -> None: ...

    async def record_alert(self, received: AlertReceived) -> AlertRecord:
        """Upsert the alert history document of (namespace, source, fingerprint)."""

    async def insert_execution(self, execution: Execution) -> bool:
        """Insert; return False (and change nothing) if the trigger key already exists."""

    async def get_execution(self, execution_id: str) -> Execution | None: ...

    async def find_by_trigger_key(self, trigger_key: str) -> Execution | None: ...

    async def update_execution(self, execution: Execution, *, expected_version: int) -> None:
        """Replace the execution if its stored version is `expected_version`.

        `execution.version` must be `expected_version + 1`. Raises Conflict otherwise.
        """

    async def list_executions(
        self, query: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> ExecutionPage: ...


async def open_store(url: str) -> Store:
    """Open the store named by `url` (sqlite:///path or mongodb://…)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from vigil.common.adapters.sqlite import SqliteStore

        return await SqliteStore.open(url)
    if scheme in ("mongodb", "mongodb+srv"):
        msg = "the MongoDB store is not available in this build yet; use sqlite:///path"
        raise InvalidInput(msg)
    msg = f"store URL {url!r} must start with sqlite:// or mongodb://"
    raise InvalidInput(msg)
