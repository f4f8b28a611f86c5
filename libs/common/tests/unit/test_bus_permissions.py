"""The permissions table (`vigil.common.bus_permissions`): least privilege by construction,
and the committed production configuration is the table's (`make nats-auth`).

What nats-server does with these grants is checked against a real server in
`tests/integration/test_bus_permissions.py`; here, who may touch what, read from the table
with NATS's own wildcard rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.common.bus_permissions import (
    DEPLOY_FILE,
    BusUser,
    bus_user,
    bus_users,
    deploy_file,
    environment_passwords,
    literal_passwords,
    nats_authorization,
)

ROOT = Path(__file__).resolve().parents[4]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


def publishers(subject: str) -> set[str]:
    return {u.name for u in bus_users() if any(matches(g, subject) for g in u.publish)}


def subscribers(subject: str) -> set[str]:
    return {u.name for u in bus_users() if any(matches(g, subject) for g in u.subscribe)}


def test_the_committed_deploy_configuration_is_the_table() -> None:
    committed = (ROOT / "deploy" / "nats" / DEPLOY_FILE).read_text(encoding="utf-8")
    assert committed == deploy_file(), "deploy/nats is stale: run `make nats-auth`"


def test_the_users_are_the_five_services_and_the_provisioner() -> None:
    assert [u.name for u in bus_users()] == [
        "ingest",
        "controller",
        "engine",
        "executor",
        "sink",
        "provisioner",
    ]


@pytest.mark.parametrize("kind", ["cli", "agent", "notify"])
def test_only_the_engine_publishes_step_requests(kind: str) -> None:
    assert publishers(f"vigil.steps.{kind}") == {"engine"}


def test_each_stream_subject_has_only_its_producers() -> None:
    assert publishers("vigil.alerts.demo.alertmanager") == {"ingest", "engine"}  # schedules
    assert publishers("vigil.control.cancel") == {"ingest"}
    assert publishers("vigil.control.run") == {"ingest"}
    assert publishers("vigil.results") == {"executor", "sink"}
    assert publishers("vigil.events.demo.disk") == {"engine"}
    assert publishers("vigil.cancel.01JEXECUTION") == {"engine"}
    assert publishers("$KV.vigil-config.workflow.demo.disk") == {"controller"}


def test_each_service_dead_letters_only_its_own_consumers() -> None:
    assert publishers("vigil.dlq.steps.executor-cli") == {"executor"}
    assert publishers("vigil.dlq.steps.sink-notify") == {"sink"}
    assert publishers("vigil.dlq.alerts.engine") == {"engine"}
    assert publishers("vigil.dlq.events.controller-status") == {"controller"}


def test_only_the_provisioner_changes_streams_and_it_touches_no_message() -> None:
    for verb in ("CREATE", "UPDATE"):
        for stream in ("ALERTS", "STEPS", "RESULTS", "EVENTS", "CONTROL", "DLQ", "KV_vigil-config"):
            assert publishers(f"$JS.API.STREAM.{verb}.{stream}") == {"provisioner"}
    for verb in ("DELETE", "PURGE"):
        assert publishers(f"$JS.API.STREAM.{verb}.STEPS") == set()
    provisioner = bus_user("provisioner")
    assert all(grant.startswith("$JS.API.STREAM.") for grant in provisioner.publish)


def test_a_consumer_is_pulled_and_acknowledged_only_by_its_service() -> None:
    assert publishers("$JS.API.CONSUMER.MSG.NEXT.STEPS.executor-cli") == {"executor"}
    assert publishers("$JS.API.CONSUMER.MSG.NEXT.STEPS.sink-notify") == {"sink"}
    assert publishers("$JS.ACK.STEPS.sink-notify.1.5.5.1700000000.0") == {"sink"}
    assert publishers("$JS.ACK.ALERTS.engine.1.5.5.1700000000.0") == {"engine"}
    # The filter is part of the grant: the executor cannot make its consumer read notify.
    assert publishers("$JS.API.CONSUMER.CREATE.STEPS.executor-cli.vigil.steps.cli") == {"executor"}
    assert publishers("$JS.API.CONSUMER.CREATE.STEPS.executor-cli.vigil.steps.notify") == set()


def test_replies_reach_only_their_user_and_nobody_subscribes_to_everything() -> None:
    for user in bus_users():
        assert subscribers(f"_INBOX.{user.name}.reply") == {user.name}
    assert subscribers("vigil.cancel.01JEXECUTION") == {"executor"}
    assert subscribers("vigil.steps.cli") == set()
    for user in bus_users():
        for grant in (*user.publish, *user.subscribe):
            assert grant.split(".")[0] not in (">", "*"), (user.name, grant)
            assert not grant.startswith(("$JS.API.>", "$JS.>", "_INBOX.>")), (user.name, grant)


def test_an_unknown_user_is_refused_naming_the_users() -> None:
    with pytest.raises(KeyError, match="no bus user 'admin'; the users are ingest, controller"):
        bus_user("admin")


def test_the_configuration_names_every_password_and_nothing_else() -> None:
    literal = nats_authorization(literal_passwords({u.name: f"pw-{u.name}" for u in bus_users()}))
    for user in bus_users():
        assert f'password: "pw-{user.name}"' in literal
    from_environment = nats_authorization(environment_passwords)
    assert "password: $VIGIL_NATS_ENGINE_PASSWORD" in from_environment
    assert "pw-" not in from_environment
    assert isinstance(bus_user("engine"), BusUser)
