"""Fake Slack and Teams over real HTTP: a threaded server on loopback that records every
POST and answers as the real services do (scripted, in order, the last answer repeated).

Slack's incoming webhook answers 200 `ok` or a 4xx with a plain-text error
(`invalid_payload`, `no_service`); its Web API answers HTTP 200 with `{"ok": true, …}` or
`{"ok": false, "error": "channel_not_found"}`; both send 429 with `Retry-After` when rate
limited. A Teams workflow webhook answers 202 with an empty body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


SLACK_WEBHOOK_OK = Answer(status=200, body="ok")
SLACK_API_OK = Answer(
    status=200,
    body=json.dumps({"ok": True, "channel": "C0123ONCALL", "ts": "1764640000.000100"}),
    content_type="application/json; charset=utf-8",
)
TEAMS_ACCEPTED = Answer(status=202)


def slack_webhook_error(status: int, error: str) -> Answer:
    return Answer(status=status, body=error)


def slack_api_error(error: str, *, headers: dict[str, str] | None = None) -> Answer:
    return Answer(
        status=200,
        body=json.dumps({"ok": False, "error": error}),
        content_type="application/json; charset=utf-8",
        headers=headers or {},
    )


def rate_limited(retry_after: str) -> Answer:
    return Answer(status=429, body="rate_limited", headers={"Retry-After": retry_after})


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatPost:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@dataclass(slots=True, kw_only=True)
class FakeChat:
    """Records POSTs; answers `script` in order, repeating its last answer."""

    script: list[Answer] = field(default_factory=lambda: [SLACK_WEBHOOK_OK])
    posts: list[ChatPost] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _server: _Server | None = None

    def url(self, path: str = "/") -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def answer(self, *answers: Answer) -> None:
        with self._arrived:
            self.script = list(answers)

    def _record(self, post: ChatPost) -> Answer:
        with self._arrived:
            answer = self.script[min(len(self.posts), len(self.script) - 1)]
            self.posts.append(post)
            self._arrived.notify_all()
            return answer

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = fake._record(
                    ChatPost(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw),
                    )
                )
                payload = answer.body.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, count: int, *, timeout: float) -> list[ChatPost]:
        """Block until at least `count` posts arrived; fail the test otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.posts) >= count, timeout=timeout):
                msg = f"expected {count} posts within {timeout}s, got {len(self.posts)}"
                raise AssertionError(msg)
            return list(self.posts)


@contextmanager
def fake_chat(*answers: Answer) -> Iterator[FakeChat]:
    chat = FakeChat(script=list(answers) or [SLACK_WEBHOOK_OK])
    chat.start()
    try:
        yield chat
    finally:
        chat.stop()
