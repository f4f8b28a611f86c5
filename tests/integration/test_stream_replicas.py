"""Provisioning with `VIGIL_STREAM_REPLICAS` against a real single nats-server: more than one
replica cannot be kept there, and provisioning says so, and what to do, instead of retrying
forever. (The 3-node cluster that does keep them: tests/fault/test_nats_cluster.py.)"""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.service import provision
from vigil.common.errors import InvalidInput
from vigil.common.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_task_left_behind")]


def settings(nats_url: str, replicas: int) -> ServiceSettings:
    return ServiceSettings(nats_url=nats_url, stream_replicas=replicas)


async def test_one_replica_provisions_every_stream_and_the_bucket_with_one_copy(
    nats_url: str, js: JetStreamContext
) -> None:
    bus = await JetStreamBus.connect(nats_url, name="test-provision")
    try:
        await provision(bus, settings(nats_url, 1))
        await provision(bus, settings(nats_url, 1))
    finally:
        await bus.close()

    replicas = {str(info.config.name): info.config.num_replicas for info in await js.streams_info()}
    assert replicas == {
        "ALERTS": 1,
        "STEPS": 1,
        "RESULTS": 1,
        "EVENTS": 1,
        "CONTROL": 1,
        "DLQ": 1,
        "KV_vigil-config": 1,
    }


async def test_three_replicas_on_a_single_server_are_refused_saying_what_to_do(
    nats_url: str, js: JetStreamContext
) -> None:
    bus = await JetStreamBus.connect(nats_url, name="test-provision")
    try:
        with pytest.raises(InvalidInput) as refused:
            await provision(bus, settings(nats_url, 3))
    finally:
        await bus.close()

    assert str(refused.value) == (
        "cannot create stream ALERTS with 3 replicas (VIGIL_STREAM_REPLICAS=3): NATS refused: "
        "replicas > 1 not supported in non-clustered mode. If the replica count is what it "
        "refused, run a JetStream cluster of at least 3 servers, or set "
        "VIGIL_STREAM_REPLICAS=1 for a single nats-server"
    )
    assert [info.config.name for info in await js.streams_info()] == []


@pytest.mark.parametrize("existing", ["ALERTS", "KV_vigil-config"])
async def test_an_existing_stream_whose_replicas_cannot_change_is_refused_naming_both_counts(
    nats_url: str, js: JetStreamContext, existing: str
) -> None:
    """Every stream and the bucket exist with one copy; asking for three names the stream
    (the first in order, or the bucket's), both counts and the way out."""
    bus = await JetStreamBus.connect(nats_url, name="test-provision")
    try:
        await provision(bus, settings(nats_url, 1))
        if existing == "KV_vigil-config":
            with pytest.raises(InvalidInput) as refused:
                await bus.ensure_config_bucket(replicas=3)
        else:
            with pytest.raises(InvalidInput) as refused:
                await provision(bus, settings(nats_url, 3))
    finally:
        await bus.close()

    what = (
        "stream ALERTS"
        if existing == "ALERTS"
        else "KV bucket vigil-config (stream KV_vigil-config)"
    )
    assert str(refused.value) == (
        f"{what} has 1 replica(s) but VIGIL_STREAM_REPLICAS=3, and NATS refused to change it: "
        "replicas > 1 not supported in non-clustered mode. If the replica count is what it "
        "refused, set VIGIL_STREAM_REPLICAS=1 to keep it as it is, or make 3 JetStream "
        "servers available and start again"
    )
    assert (await js.stream_info(existing)).config.num_replicas == 1
