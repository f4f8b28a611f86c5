"""The HTTP edge's limits against slow and greedy clients, for `ops.HttpServer`.

uvicorn has no deadline for a request's headers (its keep-alive timeout starts only after
a response), none for its body, and `limit_concurrency` refuses requests, not sockets: a
client that opens connections and trickles bytes keeps them as long as it likes. Here:

- `guarded_protocol`: uvicorn's h11 protocol with a deadline from the connection (or from
  the first byte of the next request on a kept-alive one) to the end of the headers (408,
  closed); a cap on open connections (one more is answered 503 and closed at once); and
  a client answered before it finished sending its body (a 413 on its declared length)
  given the body deadline to finish before the connection is closed, as nginx lingers.
- `BodyDeadline`: ASGI middleware giving a request's body a deadline from the end of its
  headers (408, closed), whichever endpoint reads it; a client gone in the middle of its
  body is logged as one line, not as the app's traceback.

Every refusal answers `{"error": "..."}` (a malformed request too, which uvicorn answers
in plain text) and is reported by its reason to `on_reject`, which a service counts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import h11
import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = structlog.get_logger(__name__)

type HttpRefusal = Literal["header_timeout", "body_timeout", "too_many_connections", "bad_http"]
type OnReject = Callable[[HttpRefusal], None]
# What the server waits for from a client: a request head, the rest of a body it already
# answered, or (idle) the next request.
type _Awaited = Literal["head", "body", "idle"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """What one client may take of the server: time for its headers and its body, and
    the number of connections all clients may hold open together."""

    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: int = 5
    max_connections: int = 512
    max_header_bytes: int = 16 * 1024


def ignore_rejection(_: HttpRefusal) -> None:
    """The default `on_reject`: a server whose refusals nobody counts."""


def error_response_bytes(status: int, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response `{"error": message}` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def guarded_protocol(limits: HttpLimits, on_reject: OnReject) -> type[H11Protocol]:
    """uvicorn's h11 protocol under `limits` (see the module docstring)."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self._waiting: asyncio.TimerHandle | None = None
            self._waiting_for: _Awaited = "head"
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                self._refused = True
                on_reject("too_many_connections")
                message = f"more than {limits.max_connections} connections are open; retry"
                transport.write(error_response_bytes(503, message, retry_after=1))
                transport.close()
                return
            super().connection_made(transport)
            self._wait_for("head")

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            if not self._refused:
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_too_large(data):
                self.send_400_response("request head too large")
                return
            super().data_received(data)
            if self.transport.is_closing() or self._lingering():
                return
            if self.conn.their_state is not h11.IDLE:
                self._stop_waiting()  # the app has the request; the body is BodyDeadline's
            elif self.conn.trailing_data[0]:
                # Part of the next request's head: it has until the deadline to finish.
                if self._waiting is None or self._waiting_for != "head":
                    self._wait_for("head")
            else:
                self._wait_for("idle")  # between requests, after a body it was told not to send

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._lingering():
                self._wait_for("body")

        def send_400_response(self, msg: str) -> None:
            on_reject("bad_http")
            header_bytes = limits.max_header_bytes
            message = f"invalid HTTP request (malformed, or headers over {header_bytes} bytes)"
            if self.conn.our_state in {h11.IDLE, h11.SEND_RESPONSE}:  # nothing answered yet
                self.transport.write(error_response_bytes(400, message))
            self.transport.close()

        def _head_too_large(self, data: bytes) -> bool:
            """Whether the request head being received is over `max_header_bytes` (h11
            bounds only a head that has not yet arrived whole)."""
            if self.conn.their_state is not h11.IDLE:
                return False
            head = self.conn.trailing_data[0] + data
            end = head.find(b"\r\n\r\n")
            return (len(head) if end < 0 else end) > limits.max_header_bytes

        def _lingering(self) -> bool:
            """Answered while the client is still sending a body it was told not to."""
            return self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY

        def _wait_for(self, awaited: _Awaited) -> None:
            self._stop_waiting()
            seconds = {
                "head": limits.header_timeout_seconds,
                "body": limits.body_timeout_seconds,
                "idle": float(limits.keep_alive_seconds),
            }[awaited]
            self._waiting_for = awaited
            self._waiting = self.loop.call_later(seconds, self._client_too_slow)

        def _stop_waiting(self) -> None:
            if self._waiting is not None:
                self._waiting.cancel()
                self._waiting = None

        def _client_too_slow(self) -> None:
            self._waiting = None
            if self.transport.is_closing():
                return
            if self._waiting_for == "head":
                on_reject("header_timeout")
                if self.conn.trailing_data[0]:  # a request was begun: say why it ends
                    message = (
                        f"request headers not received within "
                        f"{limits.header_timeout_seconds:g} seconds"
                    )
                    self.transport.write(error_response_bytes(408, message))
            elif self._waiting_for == "body":
                on_reject("body_timeout")
            self.transport.close()

    return GuardedH11Protocol


class BodyTimeout(Exception):
    """The request body did not arrive in time; `BodyDeadline` answers 408."""


@dataclass(slots=True)
class _Exchange:
    """One request under a body deadline: what the app received and sent."""

    downstream_receive: Receive
    downstream_send: Send
    deadline: float
    body_complete: bool = False
    timed_out: bool = False
    client_left: bool = False  # before its body was complete
    response_started: bool = False

    async def receive(self) -> Message:
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.body_complete:
            return await self.downstream_receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.downstream_receive()
        except TimeoutError:
            self.timed_out = True
            msg = "the request body did not arrive in time"
            raise BodyTimeout(msg) from None
        if message["type"] == "http.disconnect":
            self.client_left = True
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return  # the app's answer to a body it never got: the 408 goes instead
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.downstream_send(message)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class BodyDeadline:
    """ASGI middleware: a request's body must arrive within `seconds` of its headers, else
    408 and the connection is closed (the app's own answer, if any, is dropped)."""

    def __init__(self, app: ASGIApp, *, seconds: float, on_reject: OnReject) -> None:
        self.app = app
        self.seconds = seconds
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(
            downstream_receive=receive,
            downstream_send=send,
            deadline=asyncio.get_running_loop().time() + self.seconds,
        )
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BodyTimeout:
            pass  # answered below
        except ClientDisconnect:
            if not exchange.client_left:
                raise
            # Gone in the middle of its body: nobody to answer, and no traceback to log.
            log.info("request_abandoned", path=scope.get("path", ""))
            return
        if not exchange.timed_out:
            return
        self.on_reject("body_timeout")
        if exchange.response_started:
            return  # too late for a status: uvicorn closes an unfinished response
        body = json.dumps(
            {"error": f"request body not received within {self.seconds:g} seconds"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
