"""Acknowledged JetStream publishing, pipelined, with one reply subscription per connection.

Every message goes out as a core NATS publish whose reply subject is `<inbox>.<n>`; the
stream answers each on that subject, and one subscription on `<inbox>.*` resolves the
future waiting for it. This is what nats-py's `publish_async` does, without what it costs
per message on a hot path (a `wait_for` around a semaphore, a random token, a NUID, a
`PubAck` built field by field): the callers bound what they have in flight themselves,
since every publish waits for its batch's acknowledgements.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

NO_RESPONDERS_STATUS = "503"


@dataclass(frozen=True, slots=True, kw_only=True)
class Wire:
    """One message as it goes on the wire."""

    subject: str
    payload: bytes
    headers: dict[str, str]


class AckedPublisher:
    """Publish to streams and wait for their acknowledgements, many at a time."""

    def __init__(self, client: Client) -> None:
        self._nc = client
        self._prefix: str | None = None
        self._subscribing = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._sequence = 0

    async def publish(self, messages: Sequence[Wire], *, timeout: float) -> list[bool]:
        """Send `messages` back to back; return, for each, whether the stream already had
        it (a duplicate `Nats-Msg-Id`) once every one is acknowledged.

        Raises what nats-py raises for a failed publish (`nats.errors.Error`,
        `nats.js.errors.Error`, a `TimeoutError` after `timeout` seconds): then some may
        have been stored, some not.
        """
        prefix = await self._reply_prefix()
        loop = asyncio.get_running_loop()
        waiting: list[tuple[str, asyncio.Future[bool]]] = []
        try:
            for message in messages:
                self._sequence += 1
                token = str(self._sequence)
                future: asyncio.Future[bool] = loop.create_future()
                self._pending[token] = future
                waiting.append((token, future))
                await self._nc.publish(
                    message.subject,
                    message.payload,
                    reply=prefix + token,
                    headers=message.headers,
                )
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*(future for _, future in waiting)))
        finally:
            for token, future in waiting:
                self._pending.pop(token, None)
                future.cancel()  # does nothing to a future already resolved

    async def _reply_prefix(self) -> str:
        if self._prefix is None:
            async with self._subscribing:
                if self._prefix is None:
                    prefix = f"{self._nc.new_inbox()}."
                    await self._nc.subscribe(f"{prefix}*", cb=self._on_reply)
                    self._prefix = prefix
        return self._prefix

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        future = self._pending.pop(token, None)
        if future is None or future.done():
            return  # the publisher gave up on it (timeout, cancelled)
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS_STATUS:
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            error = nats.js.errors.Error(f"undecodable acknowledgement: {msg.data[:200]!r}")
            future.set_exception(error)
            return
        if "error" in answer:
            future.set_exception(nats.js.errors.APIError.from_error(answer["error"]))
            return
        future.set_result(bool(answer.get("duplicate", False)))
