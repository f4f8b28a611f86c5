"""A MongoDB-compatible server for tests: mongoeco's wire server in a subprocess on loopback.

`running_mongoeco` starts `tests.support.mongoeco_server` on a free port and yields once the
real PyMongo driver gets an answer to `ping` from it, so the store's MongoDB adapter is
tested over the wire exactly as it talks to MongoDB. `with_database` points a server URL at
one database, which is how each test gets its own. Used by `tests/conftest.py` and
`bench/store_bench.py`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.process import ServerProcess, spawn_logged, start_server

READY_TIMEOUT_SECONDS = 20.0


@dataclass(kw_only=True)
class MongoServer(ServerProcess):
    """One running mongoeco wire server."""

    @property
    def url(self) -> str:
        # A single server, not a replica set: connect to it directly.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


def with_database(url: str, database: str) -> str:
    """`url` with its path set to `/database`, keeping credentials, hosts and options."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_mongoeco(
    work_dir: Path, *, sqlite: bool = False, ready_timeout: float = READY_TIMEOUT_SECONDS
) -> MongoServer:
    """Start a mongoeco wire server (in memory, or on SQLite under `work_dir`); wait for it."""
    return start_server(
        lambda port: _spawn(work_dir, port=port, sqlite=sqlite),
        _ping,
        what="mongoeco",
        ready_timeout=ready_timeout,
        pause=0.05,
    )


def _spawn(work_dir: Path, *, port: int, sqlite: bool) -> MongoServer:
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"mongoeco-{port}.log"
    argv = [sys.executable, "-m", "tests.support.mongoeco_server", "--port", str(port)]
    if sqlite:
        argv += ["--sqlite", str(work_dir / f"mongoeco-{port}.db")]
    # The module is found from the repository root, wherever pytest was started.
    root = Path(__file__).resolve().parents[2]
    process, log_file = spawn_logged(argv, log_path, cwd=root)
    return MongoServer(port=port, log_path=log_path, process=process, _log_file=log_file)


def _ping(server: MongoServer, _: float) -> None:
    """Raises OSError until the real PyMongo driver gets an answer to `ping`."""
    client: MongoClient[dict[str, object]] = MongoClient(
        server.url, serverSelectionTimeoutMS=250, connectTimeoutMS=250
    )
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise OSError(repr(exc)) from exc
    finally:
        client.close()


@contextlib.contextmanager
def running_mongoeco(work_dir: Path, *, sqlite: bool = False) -> Iterator[MongoServer]:
    """`start_mongoeco` as a context manager: the server is stopped on exit, whatever happens."""
    server = start_mongoeco(work_dir, sqlite=sqlite)
    try:
        yield server
    finally:
        server.stop()


def drop_database(url: str) -> None:
    """Drop the database `url` names (a test's own), so a shared server does not fill up."""
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(client.get_default_database())
    finally:
        client.close()
