"""`VIGIL_STREAM_REPLICAS`: one global setting for the copies of every stream and of the
config bucket (1 embedded, 3 in production), bounded to what JetStream allows, and the
`VIGIL_NATS_URL` list a service connects to (every node of a cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vigil.common.adapters.jetstream_layout import stream_config
from vigil.common.adapters.nats_connection import server_list
from vigil.common.errors import InvalidInput
from vigil.common.settings import ServiceSettings
from vigil.common.streams import stream_specs


def test_streams_have_one_replica_unless_the_setting_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VIGIL_STREAM_REPLICAS", raising=False)
    assert ServiceSettings().stream_replicas == 1

    monkeypatch.setenv("VIGIL_STREAM_REPLICAS", "3")
    replicas = ServiceSettings().stream_replicas

    assert replicas == 3
    configs = [stream_config(spec) for spec in stream_specs(replicas=replicas)]
    assert {config.name: config.num_replicas for config in configs} == {
        "ALERTS": 3,
        "STEPS": 3,
        "RESULTS": 3,
        "EVENTS": 3,
        "CONTROL": 3,
        "DLQ": 3,
    }


def test_the_replica_setting_changes_nothing_else_of_a_stream() -> None:
    one = [stream_config(spec).as_dict() for spec in stream_specs()]
    three = [stream_config(spec).as_dict() for spec in stream_specs(replicas=3)]

    for single, replicated in zip(one, three, strict=True):
        assert {**replicated, "num_replicas": 1} == single


@pytest.mark.parametrize("value", ["0", "6", "three"])
def test_a_replica_count_jetstream_cannot_keep_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VIGIL_STREAM_REPLICAS", value)

    with pytest.raises(ValidationError) as refused:
        ServiceSettings()

    assert "VIGIL_STREAM_REPLICAS" in str(refused.value)


def test_a_url_list_names_every_server_blanks_ignored() -> None:
    assert server_list(" nats://a:4222, nats://b:4222 ,nats://c:4222,") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (" , ", "is empty"),
        ("nats://a:4222,http://b:80", "'http://b:80' is not a NATS URL"),
        ("nats://a:4222,nats://u:secret@b:nope", "'nats://u:***@b:nope' has no valid port"),
    ],
)
def test_a_url_list_with_a_wrong_entry_is_refused_naming_it_without_its_password(
    url: str, named: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        server_list(url)

    assert named in str(refused.value)
    assert "secret" not in str(refused.value)
