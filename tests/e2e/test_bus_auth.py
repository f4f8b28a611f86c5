"""`vigil up`'s nats-server is not open (DESIGN §14, issue 10): as a user on the same host
would find it, it listens on loopback only, refuses a connection without credentials, and
refuses a step request from any user but the engine's, while the platform runs workflows
as before. Its credentials are in 0600 files, on no command line and in no environment.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from tests.support.definitions import ECHO_HELLO, alertmanager_body, firing_alert, write_definitions
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DEFINITIONS = ECHO_HELLO
SERVICES = ("controller", "engine", "executor", "sink", "ingest")


def nats_port(data_dir: Path) -> int:
    config = (data_dir / "nats-auth" / "nats.conf").read_text()
    found = re.search(r'listen: "127\.0\.0\.1:(\d+)"', config)
    assert found, config
    return int(found.group(1))


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel shows them) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


async def refused_step_request(url: str, *, user: str | None, password: str | None) -> str:
    """Connect (as `user`, or anonymously) and publish the issue's hand-made StepRequest;
    what the server said about it."""
    reported: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        reported.put_nowait(exc)

    client = Client()
    try:
        await client.connect(
            url,
            user=user,
            password=password,
            inbox_prefix=f"_INBOX.{user}" if user else "_INBOX",
            allow_reconnect=False,
            error_cb=on_error,
        )
        request = {"kind": "cli", "spec": {"command": ["sh", "-c", "id"]}}
        await client.publish("vigil.steps.cli", json.dumps(request).encode())
        await client.flush()
        async with asyncio.timeout(10):
            return str(await reported.get())
    except nats.errors.Error as exc:
        return str(exc)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    folder = tmp_path_factory.mktemp("definitions")
    write_definitions(folder, DEFINITIONS)
    # Credentials left in the user's shell must not reach the services (they would clash
    # with the embedded server's: a password and a password file are refused together).
    shell = {"VIGIL_NATS_USER": "someone", "VIGIL_NATS_PASSWORD": "from-the-shell"}
    with running_platform(
        definitions=folder, data_dir=tmp_path_factory.mktemp("data"), env=shell
    ) as up:
        yield up


def test_the_embedded_nats_server_listens_on_loopback_only(platform: Platform) -> None:
    assert platform.data_dir is not None
    assert listening_addresses(nats_port(platform.data_dir)) == {"0100007F"}  # 127.0.0.1


async def test_a_step_request_without_the_engines_credentials_is_refused(
    platform: Platform,
) -> None:
    assert platform.data_dir is not None
    url = f"nats://127.0.0.1:{nats_port(platform.data_dir)}"
    anonymous = await refused_step_request(url, user=None, password=None)
    assert "authorization violation" in anonymous.lower()

    ingest_password = (platform.data_dir / "nats-auth" / "ingest.password").read_text().strip()
    as_ingest = await refused_step_request(url, user="ingest", password=ingest_password)
    assert 'permissions violation for publish to "vigil.steps.cli"' in as_ingest.lower()


def test_workflows_run_with_every_service_on_its_own_user(platform: Platform) -> None:
    answer = httpx.post(
        f"{platform.url}/hooks/ops/am",
        json=alertmanager_body([firing_alert("BusCheck")]),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    execution = platform.newest_finished(workflow="hello")
    assert execution["state"] == "succeeded", execution
    assert execution["steps"][0]["output"]["stdout"] == "hello\n"
    # No service was refused anything it does (nats.py reports it as an error, logged).
    assert "permissions violation" not in platform.logs().lower()


def test_the_credentials_are_private_files_on_no_command_line_and_in_no_environment(
    platform: Platform,
) -> None:
    assert platform.data_dir is not None
    folder = platform.data_dir / "nats-auth"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    passwords = {}
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        if path.suffix == ".password":
            passwords[path.stem] = path.read_text().strip()
    assert set(passwords) == {*SERVICES, "provisioner"}

    for name in ("nats", *SERVICES):
        (pid,) = platform.service_pids(name)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
        for password in passwords.values():
            assert password not in cmdline, name
            assert password not in environ, name
        if name != "nats":
            assert "from-the-shell" not in environ, name
    assert not any(password in platform.logs() for password in passwords.values())
