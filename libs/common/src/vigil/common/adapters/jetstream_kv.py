"""The config bucket port (`vigil.common.definitions.ConfigBucket`) on JetStream KV.

The controller writes validated definitions here; every other service watches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats.js.errors
from nats.js.kv import KeyValue

from vigil.common.adapters.nats_errors import NATS_ERRORS
from vigil.common.errors import TransientError


class JetStreamBucket:
    """The config bucket port on a JetStream KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

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
        try:
            return list(await self._kv.keys())
        except nats.js.errors.NoKeysError:
            return []
        except NATS_ERRORS as exc:
            msg = f"cannot list keys: {exc}"
            raise TransientError(msg) from exc

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None] | None]:
        """Every key's current value, then `None` (initial load done), then changes.

        A deleted key yields `(key, None)`.
        """
        watcher = await self._kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    yield None
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                yield entry.key, None if deleted else entry.value
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await watcher.stop()  # type: ignore[no-untyped-call]
