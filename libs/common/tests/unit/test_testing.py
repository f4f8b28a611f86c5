"""The fakes shipped in `vigil.common.testing` behave as the real ports do where tests rely
on it: deduplication by message id, failures and batches over the largest message that
record nothing, a clock that sleeps in no time, and definitions that refuse to load fewer
documents than were written."""

from __future__ import annotations

import pytest

from vigil.common.bus import Outgoing
from vigil.common.errors import InvalidInput, MessageTooLarge, TransientError
from vigil.common.messages import StepCancelled
from vigil.common.secrets import SecretKey, SecretUnavailable
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
)


def notice(step: str) -> StepCancelled:
    return StepCancelled(execution_id="01EX", step=step, attempt=1)


async def test_the_publisher_deduplicates_by_message_id_as_jetstream_does() -> None:
    bus = RecordingPublisher()
    assert await bus.publish("s", notice("a"), msg_id="1") is True
    assert await bus.publish("s", notice("a"), msg_id="1") is False
    assert (
        await bus.publish_all(
            [Outgoing(subject="s", message=notice("b"), msg_id=i) for i in ("1", "2")]
        )
        == 1
    )
    assert [m.step for m in bus.messages(StepCancelled)] == ["a", "b"]


async def test_a_failed_publish_raises_and_records_nothing() -> None:
    bus = RecordingPublisher()
    bus.fail_next(2)
    for _ in range(2):
        with pytest.raises(TransientError):
            await bus.publish("s", notice("a"), msg_id="1")
    assert bus.published == []
    assert await bus.publish("s", notice("a"), msg_id="1") is True


async def test_a_batch_with_a_message_over_max_payload_is_refused_whole_naming_it() -> None:
    bus = RecordingPublisher(max_payload=200)
    items = [
        Outgoing(subject="s", message=notice("a"), msg_id="1"),
        Outgoing(subject="s", message=notice("b" * 200), msg_id="2"),
    ]
    with pytest.raises(MessageTooLarge) as refused:
        await bus.publish_all(items)
    assert (refused.value.index, refused.value.limit) == (1, 200)
    assert bus.published == []


async def test_the_fake_clock_moves_only_when_told_or_slept_on() -> None:
    clock = FakeClock()
    assert clock.now() == EPOCH
    await clock.sleep(1.5)
    clock.advance(2)
    assert (clock.now() - EPOCH).total_seconds() == 3.5
    assert clock.slept == [1.5]


def test_definitions_with_an_invalid_document_fail_loudly() -> None:
    with pytest.raises(InvalidInput, match="Workflow ops/broken"):
        definitions_view(
            """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: broken, namespace: ops}
spec: {steps: []}
"""
        )


async def test_memory_secrets_read_the_yaml_as_file_mode_and_fail_as_the_adapters_do() -> None:
    secrets = MemorySecrets.of(
        """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team, namespace: ops}
spec: {type: webhook, webhook: {urlSecretRef: {name: hook, key: url}}}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: ops}
stringData: {url: "http://127.0.0.1:9/a"}
data: {token: dG9rZW4=}
"""
    )
    url = SecretKey(namespace="ops", name="hook", key="url")

    assert await secrets.resolve(url) == "http://127.0.0.1:9/a"
    assert await secrets.resolve(SecretKey(namespace="ops", name="hook", key="token")) == "token"
    with pytest.raises(SecretUnavailable, match="Secret ops/hook has no key 'user' in memory"):
        await secrets.resolve(SecretKey(namespace="ops", name="hook", key="user"))
    secrets.fail_next()
    with pytest.raises(SecretUnavailable, match="Secret ops/hook cannot be read"):
        await secrets.resolve(url)
    secrets.remove("ops", "hook")
    with pytest.raises(SecretUnavailable, match="Secret ops/hook is not defined in memory"):
        await secrets.resolve(url)
    assert [key.key for key in secrets.resolved] == ["url", "token", "user", "url", "url"]
