"""Vigil's error tree.

Errors carry their retry meaning: the bus maps them to JetStream outcomes in one place
(`vigil.common.outcomes`), and the HTTP edge maps them to status codes. Adapters translate
foreign errors (nats, sqlite, httpx …) into these once, at the boundary.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class TransientError(VigilError):
    """Worth retrying: the same input may succeed later (network blip, store busy)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(VigilError):
    """Will fail the same way on every attempt; retrying only wastes time."""


class InvalidInput(PermanentError):
    """The input itself is wrong; the message names the field and the problem."""


class NotFound(PermanentError):
    """A referenced thing (execution, source, workflow) does not exist."""


class Conflict(TransientError):
    """A compare-and-set lost a race; reload and try again."""


class MessageTooLarge(PermanentError):
    """A message is larger than the bus takes (NATS `max_payload`); nothing was published.

    `index` is the message's position in the batch handed to `publish_all` (0 for `publish`).
    """

    def __init__(self, message: str, *, index: int, size: int, limit: int) -> None:
        super().__init__(message)
        self.index = index
        self.size = size
        self.limit = limit
