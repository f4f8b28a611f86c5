"""Fakes that ship beside the ports, for unit tests of handlers (as httpx ships MockTransport).

- `RecordingPublisher`: the `Publisher` (and `ConsumerStatsSource`) port in memory. It
  records what was published, deduplicates by `msg_id` as JetStream does, refuses a batch
  with a message over `max_payload` as the JetStream adapter does (`MessageTooLarge`,
  nothing recorded), and can be told to fail the next publishes with a `TransientError`.
- `FakeClock`: the `Clock` port; time moves only by `advance()` or by a `sleep()` on it.
- `MemoryBucket`: the `ConfigBucket` port (definitions) in memory.
- `MemorySecrets`: the `SecretResolver` port in memory, filled from the same YAML as the
  definitions (`MemorySecrets.of`) and edited by the test (rotation, removal, an
  unreachable store).
- `delivery()`: the `Delivery` a handler gets with a message (which attempt, how many).
- `sqlite_store()`: the real SQLite store adapter on a file in a folder of the test's.
- `validated()`, `definitions_view()`: YAML definitions validated as the controller
  validates them (an invalid one fails the test at once), and loaded into a view.

The handler code under test is the production code: only the edges are replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vigil.common.bus import ConsumerStats, Delivery, Outgoing
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import InvalidInput, MessageTooLarge, TransientError
from vigil.common.messages import Contract
from vigil.common.secrets import SecretKey, SecretUnavailable, read_secret, value_of
from vigil.common.store import Retention, Store
from vigil.common.validation import (
    RawDocument,
    ValidationReport,
    load_yaml_documents,
    validate_documents,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class RecordingPublisher:
    """An in-memory bus: what was published, in order, and what was announced."""

    published: list[Outgoing] = field(default_factory=list)
    announced: list[tuple[str, Contract]] = field(default_factory=list)
    stats: dict[tuple[str, str], ConsumerStats] = field(default_factory=dict)
    # nats-server's default; a message is its JSON body plus its id (the real adapter also
    # counts its other headers, a few dozen bytes more).
    max_payload: int = 1024 * 1024
    _seen: set[str] = field(default_factory=set)
    _failures: list[TransientError] = field(default_factory=list)

    def fail_next(self, times: int = 1, *, reason: str = "no ack from JetStream") -> None:
        """Make the next `times` publish calls raise TransientError (nothing is recorded)."""
        self._failures += [TransientError(f"fake publish failed: {reason}")] * times

    async def publish(self, subject: str, message: Contract, *, msg_id: str) -> bool:
        # A single publish is a batch of one: the same failure and deduplication rules.
        return (
            await self.publish_all([Outgoing(subject=subject, message=message, msg_id=msg_id)]) == 1
        )

    async def publish_all(self, items: Sequence[Outgoing]) -> int:
        await asyncio.sleep(0)  # a real publish yields to the loop; so does this one
        if self._failures:
            raise self._failures.pop(0)
        for index, item in enumerate(items):
            size = len(item.message.model_dump_json(by_alias=True).encode()) + len(item.msg_id)
            if size > self.max_payload:
                msg = f"fake publish: message {index} is {size} bytes, over {self.max_payload}"
                raise MessageTooLarge(msg, index=index, size=size, limit=self.max_payload)
        new = 0
        for item in items:
            if item.msg_id in self._seen:
                continue
            self._seen.add(item.msg_id)
            self.published.append(item)
            new += 1
        return new

    async def announce(self, subject: str, message: Contract) -> None:
        self.announced.append((subject, message))

    async def consumer_stats(self, stream: str, durable: str) -> ConsumerStats:
        return self.stats.get(
            (stream, durable), ConsumerStats(stream=stream, consumer=durable, exists=False)
        )

    def messages[T: Contract](self, model: type[T], subject: str | None = None) -> list[T]:
        """The published messages of type `model` (on `subject`, if given), in order."""
        return [
            item.message
            for item in self.published
            if isinstance(item.message, model) and subject in (None, item.subject)
        ]

    def notices[T: Contract](self, model: type[T]) -> list[T]:
        """The announced (core NATS) notices of type `model`, in order."""
        return [message for _, message in self.announced if isinstance(message, model)]

    def subjects(self) -> list[str]:
        return [item.subject for item in self.published]

    def clear(self) -> None:
        """Forget what was published (deduplication ids are kept, as JetStream keeps them)."""
        self.published.clear()
        self.announced.clear()


@dataclass(slots=True)
class FakeClock:
    """A clock that stands still until told to move; sleeping on it moves it at once."""

    current: datetime = EPOCH
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


@dataclass(slots=True)
class MemoryBucket:
    """The `ConfigBucket` port in memory: what the controller published, by key."""

    values: dict[str, bytes] = field(default_factory=dict)
    writes: int = 0

    async def put(self, key: str, value: bytes) -> None:
        self.values[key] = value
        self.writes += 1

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)
        self.writes += 1

    async def keys(self) -> list[str]:
        return sorted(self.values)

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None] | None]:
        for key, value in sorted(self.values.items()):
            yield key, value
        yield None  # the initial values are all there

    def definition_keys(self) -> list[str]:
        return sorted(key for key in self.values if key.startswith("def."))


@dataclass(slots=True)
class MemorySecrets:
    """The `SecretResolver` port in memory: Secrets by (namespace, name), and what was asked."""

    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    resolved: list[SecretKey] = field(default_factory=list)
    _failures: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, yaml_text: str) -> MemorySecrets:
        """The `kind: Secret` documents of `yaml_text`, as file mode would read them."""
        secrets = cls()
        for body in load_yaml_documents(yaml_text):
            if isinstance(body, dict) and body.get("kind") == "Secret":
                document = read_secret(body)
                secrets.put(document.namespace, document.name, **document.values)
        return secrets

    def put(self, namespace: str, name: str, **values: str) -> None:
        """Create or replace (rotate) a Secret."""
        self.secrets[(namespace, name)] = dict(values)

    def remove(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)

    def fail_next(self, times: int = 1, *, reason: str = "the Secret store is unreachable") -> None:
        """Make the next `times` resolutions raise SecretUnavailable, as an unreachable store."""
        self._failures += [reason] * times

    async def resolve(self, secret: SecretKey) -> str:
        await asyncio.sleep(0)  # a real store is read off the loop; this yields too
        self.resolved.append(secret)
        if self._failures:
            raise SecretUnavailable(secret, f"cannot be read: {self._failures.pop(0)}")
        return value_of(
            secret, self.secrets.get((secret.namespace, secret.name)), where="in memory"
        )


def delivery(
    attempt: int = 1, *, max_deliver: int = 5, subject: str = "", sequence: int = 1
) -> Delivery:
    """The `Delivery` of the `attempt`-th delivery of a message (1 = first)."""
    return Delivery(
        subject=subject,
        headers={},
        delivery=attempt,
        max_deliver=max_deliver,
        stream_sequence=sequence,
    )


@contextlib.asynccontextmanager
async def sqlite_store(folder: Path, *, retention: Retention | None = None) -> AsyncIterator[Store]:
    """The SQLite store adapter on `folder/vigil.db`, closed on exit."""
    from vigil.common.adapters.sqlite import SqliteStore

    store = await SqliteStore.open(
        f"sqlite:///{folder / 'vigil.db'}", retention=retention or Retention()
    )
    try:
        yield store
    finally:
        await store.close()


def validated(yaml_text: str) -> ValidationReport:
    """The definitions of `yaml_text` (`---`-separated), validated as the controller does.

    Raises InvalidInput naming the problem if any document is invalid: a test must not
    run against fewer definitions than it wrote.
    """
    documents = [
        RawDocument(origin=f"test#{number}", body=body)
        for number, body in enumerate(load_yaml_documents(yaml_text))
    ]
    report = validate_documents(documents)
    problems = report.problems()
    if problems:
        raise InvalidInput("; ".join(problems))
    return report


def definitions_view(yaml_text: str, *, ready: bool = True) -> DefinitionsView:
    """`validated(yaml_text)` loaded into a view, ready unless told otherwise."""
    report = validated(yaml_text)
    view = DefinitionsView()
    for definition in report.definitions:
        view.add(definition)
    if ready:
        view.ready.set()
    return view
