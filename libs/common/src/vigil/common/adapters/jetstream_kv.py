"""The config bucket port (`vigil.common.definitions.ConfigBucket`) on JetStream KV.

The controller writes validated definitions here; every other service watches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from vigil.common.adapters.nats_errors import NATS_ERRORS
from vigil.common.errors import TransientError

# A watch is an ephemeral consumer, removed by the server once nobody has listened to it
# for this long. A listing of the keys is over in moments: its consumer goes soon (the
# server allows 1,000 consumers on the bucket's stream, and the controller lists the keys
# at every report it publishes). A long watch keeps nats-py's 5 minutes, which it
# rides out a reconnect with.
LISTING_INACTIVE_SECONDS = 5.0


class JetStreamBucket:
    """The config bucket port on a JetStream KV bucket."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str) -> None:
        self._kv = kv
        self._js = js
        self._stream = f"KV_{bucket}"

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self._kv.put(key, value)
        except NATS_ERRORS as exc:
            msg = f"cannot write {key}: {exc}"
            raise TransientError(msg) from exc

    async def delete(self, key: str) -> None:
        try:
            await self._kv.delete(key)
        except NATS_ERRORS as exc:
            msg = f"cannot delete {key}: {exc}"
            raise TransientError(msg) from exc

    async def keys(self) -> list[str]:
        """The keys that hold a value now (deleted ones left out)."""
        present: set[str] = set()
        async with contextlib.aclosing(self._watch(LISTING_INACTIVE_SECONDS)) as changes:
            async for change in changes:
                if change is None:
                    break
                key, value = change
                if value is None:
                    present.discard(key)
                else:
                    present.add(key)
        return sorted(present)

    def watch(self) -> AsyncGenerator[tuple[str, bytes | None] | None]:
        """Every key's current value, then `None` (initial load done), then changes.

        A deleted key yields `(key, None)`.

        The end of the initial load is worked out here, not taken from nats-py's watcher:
        that one asks the consumer how many messages are pending, and the server may answer
        0 (all sent) before the sent messages have reached this client, so its marker can
        come first, before any value (seen on a loaded machine). Here the load is done at
        the entry the consumer had nothing pending after, or at the bucket's last message
        as it was before the watch began; an empty bucket is loaded at once.
        """
        return self._watch(None)

    async def _watch(
        self, inactive_seconds: float | None
    ) -> AsyncGenerator[tuple[str, bytes | None] | None]:
        """`watch()`, its consumer removed `inactive_seconds` after nobody listens to it
        (None: nats-py's 5 minutes)."""
        try:
            state = (await self._js.stream_info(self._stream)).state
            watcher = await self._kv.watchall(inactive_threshold=inactive_seconds)
        except NATS_ERRORS as exc:
            msg = f"cannot watch the config bucket: {exc}"
            raise TransientError(msg) from exc
        last = int(state.last_seq) if state.messages else 0
        loading = last > 0
        try:
            if not loading:
                yield None
            async for entry in watcher:
                if entry is None:  # nats-py's own marker (see above)
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                yield entry.key, None if deleted else entry.value
                if loading and (entry.delta == 0 or (entry.revision or 0) >= last):
                    loading = False
                    yield None
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await watcher.stop()  # type: ignore[no-untyped-call]
