"""A MongoDB-compatible server for tests: mongoeco's wire server in a subprocess on loopback.

`running_mongoeco` starts `tests.support.mongoeco_server` on a free port and yields once the
real PyMongo driver gets an answer to `ping` from it, so the store's MongoDB adapter is
tested over the wire exactly as it talks to MongoDB. `with_database` points a server URL at
one database, which is how each test gets its own. Used by `tests/conftest.py` and
`bench/store_bench.py`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.nats import free_port

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
_PORT_ATTEMPTS = 5


@dataclass(kw_only=True)
class MongoServer:
    """One running mongoeco wire server."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        # A single server, not a replica set: connect to it directly.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Terminate gracefully (SIGTERM), kill if it has not exited within `timeout`."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
        finally:
            self._log_file.close()


def with_database(url: str, database: str) -> str:
    """`url` with its path set to `/database`, keeping credentials, hosts and options."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_mongoeco(
    work_dir: Path, *, sqlite: bool = False, ready_timeout: float = READY_TIMEOUT_SECONDS
) -> MongoServer:
    """Start a mongoeco wire server (in memory, or on SQLite under `work_dir`); wait for it."""
    failure = ""
    for _ in range(_PORT_ATTEMPTS):
        server = _spawn(work_dir, port=free_port(), sqlite=sqlite)
        try:
            _wait_ready(server, ready_timeout)
        except RuntimeError as exc:
            failure = str(exc)
            server.stop()
            continue
        return server
    msg = f"mongoeco did not become ready: {failure}"
    raise RuntimeError(msg)


def _spawn(work_dir: Path, *, port: int, sqlite: bool) -> MongoServer:
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"mongoeco-{port}.log"
    log_file = log_path.open("ab")
    argv = [sys.executable, "-m", "tests.support.mongoeco_server", "--port", str(port)]
    if sqlite:
        argv += ["--sqlite", str(work_dir / f"mongoeco-{port}.db")]
    # The module is found from the repository root, wherever pytest was started.
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(argv, cwd=root, stdout=log_file, stderr=subprocess.STDOUT)
    return MongoServer(port=port, log_path=log_path, process=process, _log_file=log_file)


def _wait_ready(server: MongoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not server.running:
            msg = f"exited with {server.process.returncode}:\n{server.log_tail()}"
            raise RuntimeError(msg)
        client: MongoClient[dict[str, object]] = MongoClient(
            server.url, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            last_error = repr(exc)
            time.sleep(0.05)
            continue
        finally:
            client.close()
        return
    msg = f"not ready on port {server.port} after {timeout} s ({last_error}):\n{server.log_tail()}"
    raise RuntimeError(msg)


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
