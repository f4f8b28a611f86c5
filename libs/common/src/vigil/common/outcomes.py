"""How a handler's result becomes a JetStream outcome: ack, nak with a delay, or term.

Handlers state intent by returning or raising one of `vigil.common.errors`; this is the one
place that turns it into what happens to the message. A message that has used its last
delivery is dead-lettered with the reason rather than retried forever or dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vigil.common.errors import PermanentError, TransientError

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    action: Literal["ack", "nak", "term"]
    delay: float | None = None
    dead_letter: bool = False
    reason: str | None = None


def backoff(delivery: int, *, base: float = BACKOFF_BASE_SECONDS) -> float:
    """Exponential redelivery delay for the n-th delivery, capped."""
    return float(min(base * 2 ** max(delivery - 1, 0), BACKOFF_CAP_SECONDS))


def outcome_for(error: BaseException | None, *, delivery: int, max_deliver: int) -> Outcome:
    """Map a handler's result to an outcome. `delivery` counts from 1."""
    if error is None:
        return Outcome(action="ack")
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, PermanentError):
        return Outcome(action="term", dead_letter=True, reason=reason)
    if delivery >= max_deliver:
        return Outcome(
            action="term",
            dead_letter=True,
            reason=f"gave up after {delivery} deliveries: {reason}",
        )
    if isinstance(error, TransientError) and error.retry_after is not None:
        return Outcome(action="nak", delay=error.retry_after, reason=reason)
    return Outcome(action="nak", delay=backoff(delivery), reason=reason)
