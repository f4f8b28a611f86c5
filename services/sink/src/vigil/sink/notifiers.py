"""The notifier port: how the sink hands one notification to one kind of receiver.

One module per sink type under `adapters/` (`log`, `webhook`, `pagerduty`, `smtp` for
type `email`; Slack and Teams come the same way), registered by type in `app.py`. A
notifier makes one attempt and says how it went by returning (delivered) or raising
`TransientError` (worth another attempt, with `retry_after` when the receiver said when)
or `PermanentError` (the receiver refused this notification). Retries, backoff, the
idempotency key, the `deliveries` records, the rate limit and the deadline are the
delivery loop's (`vigil.sink.delivering`), written once for every type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from vigil.common.definitions import Definition
from vigil.common.messages import NotifyStep, StepRequest
from vigil.common.resources import Sink


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One notify step's message for one sink, with the key receivers deduplicate by."""

    sink: Definition  # the Sink resource (Secrets by reference: notifiers resolve them)
    request: StepRequest
    notify: NotifyStep
    idempotency_key: str

    @property
    def resource(self) -> Sink:
        resource = self.sink.resource
        assert isinstance(resource, Sink), "a Notification is built for a Sink definition"
        return resource

    @property
    def sink_name(self) -> str:
        return self.sink.resource.metadata.name

    @property
    def sink_type(self) -> str:
        return self.resource.spec.type


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None:
        """Make one delivery attempt; raise TransientError or PermanentError if it failed."""


type Notifiers = Mapping[str, Notifier]
