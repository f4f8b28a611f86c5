"""Live updates of the console's pages: the engine's execution events, fanned out to every
open page over Server-Sent Events.

Ingest hears the events as they are published to the EVENTS stream's subjects (a core NATS
subscription to `vigil.events.>`: no consumer state on the server, nothing to clean up
when a page closes). A page does not need the past: it was rendered from the store a
moment ago, and the browser's EventSource reconnects by itself; a page that cannot keep up
is disconnected (its queue is full), reconnects and its script reloads the list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from vigil.common.messages import ExecutionEvent

QUEUED_PER_PAGE = 256


@dataclass(slots=True)
class LiveEvents:
    """The fan-out: `on_event` is the bus handler, `subscribed` a page's queue."""

    queued_per_page: int = QUEUED_PER_PAGE
    _pages: set[asyncio.Queue[ExecutionEvent | None]] = field(default_factory=set)

    async def on_event(self, event: ExecutionEvent) -> None:
        for queue in list(self._pages):
            if queue.qsize() >= self.queued_per_page - 1:
                # Too far behind: tell it to start over rather than let memory grow.
                self._pages.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[asyncio.Queue[ExecutionEvent | None]]:
        """A queue of the events from now on; None in it means: fell behind, start over."""
        queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue(self.queued_per_page)
        self._pages.add(queue)
        try:
            yield queue
        finally:
            self._pages.discard(queue)

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
