"""A server that tests start as a subprocess on a free loopback port, written once.

`ServerProcess` is the running process with its log; `start_server` spawns one on a free
port (trying another if the port was taken meanwhile) and returns once `probe` answers,
which is what "ready" means for that server (JetStream answering, MongoDB's `ping`).
Used by `tests.support.nats` and `tests.support.mongo`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STOP_TIMEOUT_SECONDS = 5.0
PORT_ATTEMPTS = 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(kw_only=True)
class ServerProcess:
    """One running server process, its port and its log."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] = field(repr=False)

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


def spawn_logged(
    argv: list[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start `argv` with stdout and stderr appended to `log_path` (`env`: added variables)."""
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=None if env is None else {**os.environ, **env},
    )
    return process, log_file


def start_server[S: ServerProcess](
    spawn: Callable[[int], S],
    probe: Callable[[S, float], None],
    *,
    what: str,
    port: int | None = None,
    ready_timeout: float,
    pause: float = 0.02,
) -> S:
    """Spawn with `spawn(port)` and return once `probe(server, seconds_left)` passes.

    `probe` raises OSError or ValueError while the server is not ready. With `port=None` a
    free port is chosen (another one is tried if it was taken meanwhile); a given port — a
    restart — is used as it is.
    """
    failure = ""
    for _ in range(1 if port is not None else PORT_ATTEMPTS):
        server = spawn(port if port is not None else free_port())
        try:
            _wait_ready(server, probe, ready_timeout, pause)
        except RuntimeError as exc:
            failure = str(exc)
            server.stop()
            continue
        return server
    msg = f"{what} did not become ready: {failure}"
    raise RuntimeError(msg)


def _wait_ready[S: ServerProcess](
    server: S, probe: Callable[[S, float], None], timeout: float, pause: float
) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not server.running:
            msg = f"{_exit(server.process.returncode)}:\n{server.log_tail()}"
            raise RuntimeError(msg)
        try:
            probe(server, max(deadline - time.monotonic(), 0.1))
        except (OSError, ValueError) as exc:
            last_error = repr(exc)
            time.sleep(pause)
            continue
        return
    msg = f"not ready on port {server.port} after {timeout} s ({last_error}):\n{server.log_tail()}"
    raise RuntimeError(msg)


def _exit(code: int) -> str:
    """How a process ended, in words: a negative code is the signal that killed it."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"
