"""The bus is not open (DESIGN §14): a real nats-server with Vigil's users refuses what a
user is not granted and lets through what its service does.

Every test runs twice: on the configuration `vigil up` writes, and on the committed
`deploy/nats/vigil-users.conf` included in a server configuration as production does.
The expectations here are written out by hand, not read from the permissions table, so a
grant that widens or narrows shows up as a failure. Refusals are observed as nats-server
reports them: an `-ERR 'Permissions Violation …'` that nats.py hands to the connection's
error callback, awaited as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.support.bus import WAIT_SECONDS, Ping, consuming, eventually, next_item, round_trip
from tests.support.nats import (
    SecuredNats,
    deploy_config,
    embedded_config,
    free_port,
    nats_server_binary,
    start_secured_nats,
)
from vigil.common import streams
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.provisioning import provision_bus
from vigil.common.adapters.service import connected_bus
from vigil.common.bus import Delivery
from vigil.common.errors import PermanentError, TransientError
from vigil.common.settings import BusCredentials, ServiceSettings
from vigil.common.streams import ConsumerSpec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_task_left_behind")]

SERVICES = ("ingest", "controller", "engine", "executor", "sink")
STEP_REQUEST = "vigil.steps.cli"


@pytest.fixture(params=["embedded", "deploy"])
def secured_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecuredNats]:
    configure = embedded_config if request.param == "embedded" else deploy_config
    server = start_secured_nats(configure(tmp_path / "bus"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def secured(secured_server: SecuredNats) -> SecuredNats:
    """The server with its streams and config bucket made by the provisioner user."""
    settings = ServiceSettings.model_validate(
        {
            "VIGIL_NATS_URL": secured_server.url,
            "VIGIL_NATS_USER": "provisioner",
            "VIGIL_NATS_PASSWORD": secured_server.passwords["provisioner"],
        }
    )
    await provision_bus(settings, timeout=WAIT_SECONDS)
    return secured_server


@dataclass(slots=True)
class Principal:
    """A plain nats.py connection as one user, and the errors the server reported to it."""

    user: str
    client: Client
    errors: asyncio.Queue[Exception] = field(default_factory=asyncio.Queue)

    async def published(self, subject: str, body: bytes = b"{}") -> None:
        """An acknowledged JetStream publish: the user may publish there and a stream
        stored it (the acknowledgement itself arrives on the user's inbox)."""
        ack = await self.client.jetstream(timeout=WAIT_SECONDS).publish(subject, body)
        assert ack.seq > 0

    async def refused(self, action: str, subject: str) -> None:
        """Publish (`action="publish"`) or subscribe (`"subscription"`) to `subject`; the
        server must refuse."""
        if action == "publish":
            await self.client.publish(subject, b"{}")
        else:
            await self.client.subscribe(subject)
        await round_trip(self.client)
        error = await next_item(self.errors)
        expected = f'permissions violation for {action} to "{subject}"'
        assert expected.lower() in str(error).lower(), error

    async def quiet(self) -> None:
        """After a round trip, the server has reported nothing."""
        await round_trip(self.client)
        assert self.errors.empty(), self.errors.get_nowait()


@contextlib.asynccontextmanager
async def principal(server: SecuredNats, user: str) -> AsyncIterator[Principal]:
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        errors.put_nowait(exc)

    client = await nats.connect(
        server.url,
        user=user,
        password=server.passwords[user],
        inbox_prefix=f"_INBOX.{user}",
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        yield Principal(user=user, client=client, errors=errors)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def service_bus(server: SecuredNats, user: str) -> AsyncIterator[JetStreamBus]:
    bus = await JetStreamBus.connect(server.url, name=user, credentials=server.credentials(user))
    try:
        yield bus
    finally:
        await bus.close()


# --- who may connect ---------------------------------------------------------------------


async def test_a_connection_without_credentials_is_refused(secured_server: SecuredNats) -> None:
    reported: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        reported.append(exc)

    anonymous = Client()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await anonymous.connect(secured_server.url, allow_reconnect=False, error_cb=on_error)
    finally:
        await anonymous.close()  # nats.py leaves the refused socket open otherwise
    assert reported

    with pytest.raises(TransientError, match="refused the connection without credentials"):
        await JetStreamBus.connect(secured_server.url, name="anonymous")


async def test_a_wrong_password_is_refused_naming_the_user(secured_server: SecuredNats) -> None:
    wrong = BusCredentials(user="engine", password=SecretStr("not-the-password"))
    with pytest.raises(TransientError, match="refused the connection as user engine") as caught:
        await JetStreamBus.connect(secured_server.url, name="wrong", credentials=wrong)
    assert "not-the-password" not in str(caught.value)


# --- only the engine publishes step requests ----------------------------------------------


async def test_the_engine_may_publish_step_requests(secured: SecuredNats) -> None:
    async with principal(secured, "engine") as engine:
        for kind in ("cli", "agent", "notify"):
            await engine.published(f"vigil.steps.{kind}")
        await engine.quiet()


@pytest.mark.parametrize("user", ["ingest", "controller", "executor", "sink", "provisioner"])
async def test_no_other_user_may_publish_a_step_request(secured: SecuredNats, user: str) -> None:
    """The issue's attack: a hand-made StepRequest for `sh -c id` on the steps subject."""
    request = {"kind": "cli", "spec": {"command": ["sh", "-c", "id"]}}
    async with principal(secured, user) as someone:
        await someone.client.publish(STEP_REQUEST, json.dumps(request).encode())
        await round_trip(someone.client)
        error = await next_item(someone.errors)
    assert f'permissions violation for publish to "{STEP_REQUEST}"' in str(error).lower()
    async with principal(secured, "provisioner") as provisioner:
        info = await provisioner.client.jetstream().stream_info("STEPS")
    assert info.state.messages == 0


# --- each user: what it may publish, and what it may not ------------------------------------

ALLOWED = {
    "ingest": ["vigil.alerts.demo.alertmanager", "vigil.control.cancel", "vigil.control.run"],
    "engine": [
        "vigil.events.demo.disk-filling-up",
        "vigil.dlq.alerts.engine",
        "vigil.alerts.demo.nightly",  # a schedule Source's alert
    ],
    "executor": ["vigil.results", "vigil.dlq.steps.executor-cli"],
    "sink": ["vigil.results", "vigil.dlq.steps.sink-notify"],
    "controller": ["$KV.vigil-config.workflow.demo.disk", "vigil.dlq.events.controller-status"],
}
REFUSED = {
    "ingest": [
        "vigil.results",
        "vigil.events.demo.disk-filling-up",
        "vigil.cancel.01JEXECUTION",
        "$KV.vigil-config.workflow.demo.disk",
        "$JS.API.STREAM.UPDATE.ALERTS",
        "$JS.API.CONSUMER.MSG.NEXT.ALERTS.engine",
    ],
    "engine": [
        "vigil.results",
        "vigil.control.run",
        "$KV.vigil-config.workflow.demo.disk",
        "$JS.API.STREAM.UPDATE.STEPS",
        "$JS.API.STREAM.DELETE.ALERTS",
    ],
    "executor": [
        "vigil.alerts.demo.alertmanager",
        "vigil.cancel.01JEXECUTION",
        "vigil.dlq.steps.sink-notify",
        # Another service's work: the notify requests and their consumer.
        "$JS.API.CONSUMER.CREATE.STEPS.executor-cli.vigil.steps.notify",
        "$JS.API.CONSUMER.MSG.NEXT.STEPS.sink-notify",
        "$JS.ACK.STEPS.sink-notify.1.1.1.1.1",
    ],
    "sink": [
        "vigil.events.demo.disk-filling-up",
        "$JS.API.CONSUMER.MSG.NEXT.STEPS.executor-cli",
        "$JS.API.STREAM.INFO.STEPS",
    ],
    "controller": [
        "vigil.results",
        "vigil.alerts.demo.alertmanager",
        "$JS.API.STREAM.UPDATE.KV_vigil-config",
    ],
    "provisioner": [
        "vigil.alerts.demo.alertmanager",
        "$JS.API.STREAM.DELETE.STEPS",
        "$JS.API.STREAM.PURGE.ALERTS",
        "$JS.API.CONSUMER.MSG.NEXT.STEPS.executor-cli",
    ],
}


@pytest.mark.parametrize("user", list(ALLOWED))
async def test_each_service_may_publish_to_its_subjects(secured: SecuredNats, user: str) -> None:
    """Acknowledged by the stream, so also received on the user's own inbox."""
    async with principal(secured, user) as service:
        for subject in ALLOWED[user]:
            await service.published(subject)
        await service.quiet()


@pytest.mark.parametrize("user", list(REFUSED))
async def test_each_user_is_refused_what_it_is_not_granted(secured: SecuredNats, user: str) -> None:
    async with principal(secured, user) as someone:
        for subject in REFUSED[user]:
            await someone.refused("publish", subject)


@pytest.mark.parametrize("user", [*SERVICES, "provisioner"])
async def test_no_user_may_subscribe_to_everything_or_to_another_users_replies(
    secured: SecuredNats, user: str
) -> None:
    other = "engine" if user != "engine" else "ingest"
    async with principal(secured, user) as someone:
        await someone.refused("subscription", ">")
        await someone.refused("subscription", "_INBOX.>")
        await someone.refused("subscription", f"_INBOX.{other}.>")
        await someone.refused("subscription", "vigil.steps.>")


async def test_ingest_hears_the_engines_execution_events_and_nothing_else(
    secured: SecuredNats,
) -> None:
    """The console's live pages: a core subscription to the events as they are stored."""
    async with principal(secured, "ingest") as ingest, principal(secured, "engine") as engine:
        events = await ingest.client.subscribe("vigil.events.>")
        await round_trip(ingest.client)
        await engine.published("vigil.events.demo.disk-filling-up")
        event = await events.next_msg(timeout=WAIT_SECONDS)
        await ingest.quiet()
        await ingest.refused("subscription", "vigil.results")
        await ingest.refused("subscription", "vigil.cancel.>")
    assert event.subject == "vigil.events.demo.disk-filling-up"


async def test_the_executor_hears_the_engines_cancellation_notices(secured: SecuredNats) -> None:
    async with principal(secured, "executor") as executor, principal(secured, "engine") as engine:
        notices = await executor.client.subscribe("vigil.cancel.>")
        await round_trip(executor.client)
        await engine.client.publish("vigil.cancel.01JEXECUTION", b"{}")
        await round_trip(engine.client)
        notice = await notices.next_msg(timeout=WAIT_SECONDS)
        await executor.quiet()
        await engine.quiet()
    assert notice.subject == "vigil.cancel.01JEXECUTION"


# --- each service's own operations, through the adapter, as its user ----------------------

# (consumer, the user that feeds it, the subject it is fed on), as the services run them.
CONSUMERS = {
    "engine": [
        (streams.ENGINE_ALERTS, "ingest", "vigil.alerts.demo.alertmanager"),
        (streams.ENGINE_RESULTS, "executor", "vigil.results"),
        (streams.ENGINE_CANCEL, "ingest", "vigil.control.cancel"),
        (streams.ENGINE_RUN, "ingest", "vigil.control.run"),
        (streams.ENGINE_DEAD_STEPS, "executor", "vigil.dlq.steps.executor-cli"),
    ],
    "executor": [
        (streams.executor_steps("cli"), "engine", "vigil.steps.cli"),
        (streams.executor_steps("agent"), "engine", "vigil.steps.agent"),
    ],
    "sink": [(streams.SINK_NOTIFY, "engine", "vigil.steps.notify")],
    "controller": [(streams.CONTROLLER_EVENTS, "engine", "vigil.events.demo.disk-filling-up")],
}
WORK_QUEUES = {"STEPS", "RESULTS", "CONTROL"}


async def stream_messages(server: SecuredNats, stream: str) -> int:
    async with principal(server, "provisioner") as provisioner:
        info = await provisioner.client.jetstream().stream_info(stream)
    return int(info.state.messages)


@pytest.mark.parametrize(
    ("user", "spec", "feeder", "subject"),
    [(user, *case) for user, cases in CONSUMERS.items() for case in cases],
    ids=lambda value: value.durable if isinstance(value, ConsumerSpec) else None,
)
async def test_each_consumer_pulls_acks_and_dead_letters_as_its_service(
    secured: SecuredNats, user: str, spec: ConsumerSpec, feeder: str, subject: str
) -> None:
    """The consumer is created (with its filter), pulls, acknowledges one message and
    terminates the other with a dead letter, with no permission refused on the way."""
    async with service_bus(secured, feeder) as producer:
        await producer.publish(subject, Ping(n=1), msg_id="first")
        await producer.publish(subject, Ping(n=2), msg_id="second")
    dead_before = await stream_messages(secured, "DLQ")
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def handle(message: Ping, delivery: Delivery) -> None:
        seen.put_nowait(message.n)
        if message.n == 1:
            raise PermanentError("refused on purpose")

    with capture_logs() as logs:
        async with service_bus(secured, user) as bus, consuming(bus, spec, Ping, handle):
            assert {await next_item(seen), await next_item(seen)} == {1, 2}

            async def dead_lettered() -> bool:
                return await stream_messages(secured, "DLQ") == dead_before + 1

            await eventually(dead_lettered, "the refused message is dead-lettered")
            if spec.stream in WORK_QUEUES:  # settled messages leave a work queue

                async def settled() -> bool:
                    return await stream_messages(secured, spec.stream) == 0

                await eventually(settled, f"{spec.stream} is empty")
    refusals = [e for e in logs if "violation" in str(e.get("error", "")).lower()]
    assert not refusals


async def test_the_engines_alerts_are_acknowledged_as_ingest_sees_in_the_stats(
    secured: SecuredNats,
) -> None:
    """Ingest reads the lag of the monitored consumers (`/api/v1/stats`); here it shows the
    engine's acknowledgements arrived."""
    async with service_bus(secured, "ingest") as ingest:
        await ingest.publish("vigil.alerts.demo.alertmanager", Ping(n=1), msg_id="one")
        seen: asyncio.Queue[int] = asyncio.Queue()

        async def handle(message: Ping, delivery: Delivery) -> None:
            seen.put_nowait(message.n)

        async with (
            service_bus(secured, "engine") as engine,
            consuming(engine, streams.ENGINE_ALERTS, Ping, handle),
        ):
            assert await next_item(seen) == 1

            async def acknowledged() -> bool:
                stats = await ingest.consumer_stats("ALERTS", "engine")
                return stats.acknowledged == 1 and stats.lag == 0

            await eventually(acknowledged, "ALERTS/engine acknowledged the alert")
        for spec in streams.MONITORED:
            assert (await ingest.consumer_stats(spec.stream, spec.durable)).stream == spec.stream


async def test_the_controller_writes_definitions_that_the_others_watch(
    secured: SecuredNats,
) -> None:
    async with service_bus(secured, "controller") as controller:
        bucket = await controller.config_bucket()
        await bucket.put("workflow.demo.disk", b'{"v": 1}')
        await bucket.put("workflow.demo.gone", b'{"v": 0}')
        await bucket.delete("workflow.demo.gone")

        async def only_the_kept_key() -> bool:
            # keys() reads the bucket through a watcher: on a loaded machine one read may
            # end before the server sent anything.
            return sorted(await bucket.keys()) == ["workflow.demo.disk"]

        await eventually(only_the_kept_key, "the bucket lists the key that was kept")
        for reader in ("ingest", "engine", "sink"):
            async with service_bus(secured, reader) as bus:
                watch = (await bus.config_bucket()).watch()
                try:
                    async with asyncio.timeout(WAIT_SECONDS):
                        loaded = {}
                        while (entry := await anext(watch)) is not None:  # the initial load
                            loaded[entry[0]] = entry[1]
                        assert loaded == {
                            "workflow.demo.disk": b'{"v": 1}',
                            "workflow.demo.gone": None,
                        }
                        await bucket.put("workflow.demo.disk", b'{"v": 2}')
                        assert await anext(watch) == ("workflow.demo.disk", b'{"v": 2}')
                finally:
                    await watch.aclose()
                await bucket.put("workflow.demo.disk", b'{"v": 1}')


async def test_only_the_provisioner_makes_the_streams(secured_server: SecuredNats) -> None:
    """A service started with provisioning on, as its own user, cannot make the layout,
    and is told what to do instead."""
    settings = ServiceSettings.model_validate(
        {
            "VIGIL_NATS_URL": secured_server.url,
            "VIGIL_NATS_USER": "ingest",
            "VIGIL_NATS_PASSWORD": secured_server.passwords["ingest"],
        }
    )
    with pytest.raises(TransientError, match="cannot provision stream ALERTS") as caught:
        async with connected_bus(settings, service="ingest"):
            pytest.fail("connected without the streams")
    assert "set VIGIL_NATS_PROVISION=false" in str(caught.value)
    assert secured_server.passwords["ingest"] not in str(caught.value)


# --- failing closed -------------------------------------------------------------------------


def test_the_deploy_configuration_does_not_start_without_a_password(tmp_path: Path) -> None:
    """A user whose password variable is missing stops nats-server: it never runs open."""
    config, _, _ = deploy_config(tmp_path / "bus")(free_port())
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_NATS_")}
    checked = subprocess.run(
        [str(nats_server_binary()), "--config", str(config), "-t"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=False,
    )
    assert checked.returncode != 0
    assert "VIGIL_NATS_INGEST_PASSWORD" in checked.stdout + checked.stderr


def provisioning(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.common.adapters.provisioning"],
        capture_output=True,
        text=True,
        env={**os.environ, "VIGIL_LOG_FORMAT": "json", **env},
        timeout=60,
        check=False,
    )


def test_provisioning_names_a_password_file_it_cannot_read(tmp_path: Path) -> None:
    done = provisioning(
        {
            "VIGIL_NATS_URL": f"nats://127.0.0.1:{free_port()}",
            "VIGIL_NATS_USER": "provisioner",
            "VIGIL_NATS_PASSWORD_FILE": str(tmp_path / "missing.password"),
        }
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "missing.password: cannot read it" in done.stdout + done.stderr


def test_provisioning_with_a_wrong_password_fails_naming_the_user(
    secured_server: SecuredNats, tmp_path: Path
) -> None:
    (tmp_path / "wrong.password").write_text("not-the-password\n")
    done = provisioning(
        {
            "VIGIL_NATS_URL": secured_server.url,
            "VIGIL_NATS_USER": "provisioner",
            "VIGIL_NATS_PASSWORD_FILE": str(tmp_path / "wrong.password"),
            "VIGIL_PROVISION_TIMEOUT_SECONDS": "1",
        }
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "refused the connection as user provisioner" in output
    assert "not-the-password" not in output
