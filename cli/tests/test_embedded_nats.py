"""What `vigil up` writes for its nats-server (`vigil.cli.nats.embedded_bus`): private files,
fresh passwords at every start, loopback only, and a configuration nats-server accepts."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from vigil.cli.nats import embedded_bus, nats_server_binary


def test_the_configuration_and_the_passwords_are_private_to_their_owner(tmp_path: Path) -> None:
    bus = embedded_bus(tmp_path, port=4999)

    assert stat.S_IMODE(bus.config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(bus.config.stat().st_mode) == 0o600
    assert set(bus.password_files) == {
        "ingest",
        "controller",
        "engine",
        "executor",
        "sink",
        "provisioner",
    }
    for path in bus.password_files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 40


def test_a_file_left_readable_by_others_is_made_private_again(tmp_path: Path) -> None:
    first = embedded_bus(tmp_path, port=4999)
    first.config.chmod(0o644)
    first.password_files["engine"].chmod(0o644)

    again = embedded_bus(tmp_path, port=4999)

    assert stat.S_IMODE(again.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(again.password_files["engine"].stat().st_mode) == 0o600


def test_every_start_has_new_passwords(tmp_path: Path) -> None:
    first = {u: p.read_text() for u, p in embedded_bus(tmp_path, port=4999).password_files.items()}
    second = {u: p.read_text() for u, p in embedded_bus(tmp_path, port=4999).password_files.items()}
    assert all(first[user] != second[user] for user in first)
    assert len(set(second.values())) == len(second)


def test_a_service_is_told_where_its_password_is_not_what_it_is(tmp_path: Path) -> None:
    bus = embedded_bus(tmp_path, port=4999)
    env = bus.env_for("engine")
    password = bus.password_files["engine"].read_text().strip()

    assert env == {
        "VIGIL_NATS_URL": "nats://127.0.0.1:4999",
        "VIGIL_NATS_USER": "engine",
        "VIGIL_NATS_PASSWORD_FILE": str(bus.password_files["engine"]),
        "VIGIL_NATS_PROVISION": "false",
    }
    assert all(password not in value for value in env.values())
    assert all(password not in arg for arg in bus.argv(Path("nats-server")))


def test_nats_server_accepts_the_configuration_and_listens_on_loopback_only(
    tmp_path: Path,
) -> None:
    bus = embedded_bus(tmp_path, port=4999)
    text = bus.config.read_text()
    assert 'listen: "127.0.0.1:4999"' in text
    assert text.count("listen") == 1

    checked = subprocess.run(
        [*bus.argv(nats_server_binary()), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout + checked.stderr
