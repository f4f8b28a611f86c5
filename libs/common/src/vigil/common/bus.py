"""The bus port: what handlers, `Progress` and the API need from the message bus.

Handlers see a message as its decoded contract plus a `Delivery` (which attempt this is)
and settle it by returning (ack) or raising one of `vigil.common.errors` (nak or term, as
`vigil.common.outcomes` decides). They publish through a `Publisher`. The JetStream adapter
(`vigil.common.adapters.jetstream.JetStreamBus`) implements both sides; the in-memory
`vigil.common.testing.RecordingPublisher` implements `Publisher` for unit tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vigil.common.messages import Contract


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What a handler may know about the message besides its body."""

    subject: str
    headers: Mapping[str, str]
    delivery: int
    max_deliver: int
    stream_sequence: int

    @property
    def is_last(self) -> bool:
        return self.delivery >= self.max_deliver


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to publish: its subject, body and deduplication id (`Nats-Msg-Id`)."""

    subject: str
    message: Contract
    msg_id: str
    # The W3C trace context (`traceparent`, `tracestate`) this message carries; the current
    # span's when None. Set when one publish carries the work of several traces.
    trace_headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerStats:
    stream: str
    consumer: str
    exists: bool = True
    stream_messages: int = 0  # every message the stream ever stored (its last sequence)
    acknowledged: int = 0  # all stream messages up to this sequence are done
    pending: int = 0  # not yet delivered to the consumer
    in_flight: int = 0  # delivered, not yet acknowledged

    @property
    def lag(self) -> int:
        return self.pending + self.in_flight


type Handler[T: Contract] = Callable[[T, Delivery], Awaitable[None]]
# A batch handler returns one outcome per message, in order: None (done) or the error.
type BatchHandler[T: Contract] = Callable[
    [Sequence[tuple[T, Delivery]]], Awaitable[Sequence[BaseException | None]]
]


class Publisher(Protocol):
    """Acknowledged publishing to streams, and best-effort notices on core subjects."""

    async def publish(self, subject: str, message: Contract, *, msg_id: str) -> bool:
        """Publish and wait for the stream's ack; False if it was a duplicate.

        Raises TransientError when the ack did not come: the caller must not report
        success, and publishing again is safe (same `msg_id`). Raises MessageTooLarge,
        publishing nothing, when the message is over the bus's largest message.
        """

    async def publish_all(self, items: Sequence[Outgoing]) -> int:
        """Publish `items` pipelined; return once all are acknowledged (how many were new).

        Raises MessageTooLarge, naming the item, before anything is published when one is
        over the bus's largest message. Raises TransientError if any was not acknowledged
        (some may have been stored: re-sending the batch is safe, every item has its id).
        """

    async def announce(self, subject: str, message: Contract) -> None:
        """Fire-and-forget (not stored, may be lost): for best-effort notices."""


class ConsumerStatsSource(Protocol):
    """How far the durable consumers are behind their streams (the stats endpoint)."""

    async def consumer_stats(self, stream: str, durable: str) -> ConsumerStats:
        """Raises TransientError when the bus cannot be asked."""
