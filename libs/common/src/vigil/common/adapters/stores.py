"""Opening the store a URL names: `sqlite:///path` (embedded) or `mongodb://…` (production)."""

from __future__ import annotations

from urllib.parse import urlparse

from vigil.common.errors import InvalidInput
from vigil.common.store import Retention, Store


async def open_store(url: str, *, retention: Retention | None = None) -> Store:
    """Open the store named by `url` (sqlite:///path or mongodb://host:port/db)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from vigil.common.adapters.sqlite import SqliteStore

        return await SqliteStore.open(url, retention=retention or Retention())
    if scheme in ("mongodb", "mongodb+srv"):
        from vigil.common.adapters.mongo import MongoStore

        return await MongoStore.open(url, retention=retention or Retention())
    msg = f"store URL {url!r} must start with sqlite:/// or mongodb://"
    raise InvalidInput(msg)
