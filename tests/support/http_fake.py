"""One threaded HTTP server on loopback for every fake receiver of the tests.

The fakes of the outside services (Slack, Teams, PagerDuty, a webhook owner, the model
APIs) differ only in how they answer; the serving is written once here. `FakeHTTPServer`
hands every request, in arrival order and under a lock, to the fake's `respond` function,
keeps it in `received`, and writes the `Reply` back (after its delay, outside the lock).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    method: str
    path: str
    header_items: list[tuple[str, str]]  # in order, duplicates kept, as they came
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case names; the last of duplicates."""
        return {key.lower(): value for key, value in self.header_items}

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.header_items if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow receiver)

    @classmethod
    def json(cls, status: int, body: Any, **options: Any) -> Reply:
        return cls(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json; charset=utf-8",
            **options,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that gave up (timeout tests) makes the late answer fail


class FakeHTTPServer:
    """Serves `respond` on 127.0.0.1 (a free port) until `stop`; also a context manager."""

    def __init__(self, respond: Callable[[Received], Reply], *, port: int = 0) -> None:
        self._respond = respond
        self._port = port  # 0: a free one, chosen when it starts
        self.received: list[Received] = []
        # Held while `respond` runs: a fake reads what `respond` records under it.
        self.arrived = threading.Condition()
        self._server: _Server | None = None

    def url(self, path: str = "") -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                reply = fake._answer(
                    Received(
                        method=self.command,
                        path=self.path,
                        header_items=list(self.headers.items()),
                        body=self.rfile.read(length) if length else b"",
                        at=time.monotonic(),
                    )
                )
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            # Every verb reaches `respond` (a fake may check that none but GET was used).
            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _Server(("127.0.0.1", self._port), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _answer(self, request: Received) -> Reply:
        with self.arrived:
            reply = self._respond(request)
            self.received.append(request)
            self.arrived.notify_all()
            return reply

    def wait_until(self, done: Callable[[], bool], *, timeout: float) -> bool:
        """Whether `done()` (checked after each request, under the lock) held in time."""
        with self.arrived:
            return self.arrived.wait_for(done, timeout=timeout)

    def wait_for(self, count: int, *, timeout: float) -> list[Received]:
        """Block until at least `count` requests arrived; fail the test otherwise."""
        if not self.wait_until(lambda: len(self.received) >= count, timeout=timeout):
            msg = f"expected {count} requests within {timeout}s, got {len(self.received)}"
            raise AssertionError(msg)
        return list(self.received)
