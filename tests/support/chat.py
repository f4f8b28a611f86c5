"""Fake Slack and Teams over real HTTP: a threaded server on loopback that records every
POST and answers as the real services do (scripted, in order, the last answer repeated).

Slack's incoming webhook answers 200 `ok` or a 4xx with a plain-text error
(`invalid_payload`, `no_service`); its Web API answers HTTP 200 with `{"ok": true, …}` or
`{"ok": false, "error": "channel_not_found"}`; both send 429 with `Retry-After` when rate
limited. A Teams workflow webhook answers 202 with an empty body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_fake import FakeHTTPServer, Received, Reply


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


@dataclass(slots=True, kw_only=True)
class FakeChat:
    """Records POSTs; answers `script` in order, repeating its last answer."""

    script: list[Answer] = field(default_factory=lambda: [SLACK_WEBHOOK_OK])
    posts: list[ChatPost] = field(default_factory=list)
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._respond)

    def url(self, path: str = "/") -> str:
        return self._server.url(path)

    def answer(self, *answers: Answer) -> None:
        self.script = list(answers)

    def _respond(self, request: Received) -> Reply:
        answer = self.script[min(len(self.posts), len(self.script) - 1)]
        self.posts.append(ChatPost(path=request.path, headers=request.headers, body=request.json()))
        return Reply(
            status=answer.status,
            body=answer.body.encode(),
            content_type=answer.content_type,
            headers=answer.headers,
        )

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def wait_for(self, count: int, *, timeout: float) -> list[ChatPost]:
        """Block until at least `count` posts arrived; fail the test otherwise."""
        self._server.wait_for(count, timeout=timeout)
        return list(self.posts)


@contextmanager
def fake_chat(*answers: Answer) -> Iterator[FakeChat]:
    chat = FakeChat(script=list(answers) or [SLACK_WEBHOOK_OK])
    chat.start()
    try:
        yield chat
    finally:
        chat.stop()
