"""Time as a port: handlers and loops ask a `Clock` for the time and for sleeps.

`SYSTEM_CLOCK` is the wall clock (UTC) and `asyncio.sleep`; unit tests pass
`vigil.common.testing.FakeClock`, whose time moves only when told to (or when something
sleeps on it), so a test of a retry with backoff takes no wall-clock time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
