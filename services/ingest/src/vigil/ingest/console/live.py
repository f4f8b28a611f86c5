"""Live updates of the console's pages: the engine's execution events, fanned out to every
open page over Server-Sent Events.

Ingest hears the events as they are published to the EVENTS stream's subjects (a core NATS
subscription to `vigil.events.>`: no consumer state on the server, nothing to clean up
when a page closes), and only while a page is open (`follow`): with nobody watching, an
alert storm costs ingest nothing. A page does not need the past: it was rendered from the store a
moment ago, and the browser's EventSource reconnects by itself; a page that cannot keep up
is disconnected (its queue is full), reconnects and its script reloads the list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from vigil.common.messages import ExecutionEvent

QUEUED_PER_PAGE = 256


@dataclass(slots=True)
class LiveEvents:
    """The fan-out: `on_event` is the bus handler, `subscribed` a page's queue."""

    queued_per_page: int = QUEUED_PER_PAGE
    _pages: set[asyncio.Queue[ExecutionEvent | None]] = field(default_factory=set)
    # Set while the bus subscription is in place (`follow` passes it to `listen`).
    hearing: asyncio.Event = field(default_factory=asyncio.Event)
    _watched: asyncio.Event = field(default_factory=asyncio.Event)
    _unwatched: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_event(self, event: ExecutionEvent) -> None:
        for queue in list(self._pages):
            if queue.qsize() >= self.queued_per_page - 1:
                # Too far behind: tell it to start over rather than let memory grow.
                self._forget(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def join(self) -> asyncio.Queue[ExecutionEvent | None]:
        """A page's queue of the events from now on (None in it: fell behind, start over);
        give it back with `leave`. A queue never given back is dropped when it fills."""
        queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue(self.queued_per_page)
        self._pages.add(queue)
        self._unwatched.clear()
        self._watched.set()
        return queue

    def leave(self, queue: asyncio.Queue[ExecutionEvent | None]) -> None:
        self._forget(queue)

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[asyncio.Queue[ExecutionEvent | None]]:
        """`join` for the block."""
        queue = self.join()
        try:
            yield queue
        finally:
            self.leave(queue)

    def _forget(self, queue: asyncio.Queue[ExecutionEvent | None]) -> None:
        self._pages.discard(queue)
        if not self._pages:
            self._watched.clear()
            self.hearing.clear()  # the subscription is on its way out
            self._unwatched.set()

    async def follow(self, listen: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        """Run `listen(ready)` (the bus subscription, until cancelled; it sets `ready` once
        subscribed) while a page is open; `hearing` says whether it is subscribed."""
        while True:
            await self._watched.wait()
            self.hearing.clear()
            listening = asyncio.create_task(listen(self.hearing), name="console live events")
            stopped = asyncio.create_task(self._unwatched.wait())
            try:
                await asyncio.wait({listening, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                listening.cancel()
                # Not `await listening` under a suppress: that would swallow this task's own
                # cancellation too, if it came now.
                await asyncio.wait({listening})
                self.hearing.clear()
            failed = None if listening.cancelled() else listening.exception()
            if failed is not None:
                raise failed  # the subscription itself failed: as it would unwrapped

    async def heard(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until the subscription is in place; whether it is."""
        try:
            await asyncio.wait_for(self.hearing.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def pages(self) -> int:
        return len(self._pages)


def sse(event: str, data: str, *, event_id: str | None = None) -> str:
    """One Server-Sent Event; `data` may span lines (each becomes a `data:` line)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"
