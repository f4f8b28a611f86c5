"""Fake model servers over HTTP, for the agent step: an OpenAI-compatible one
(`/v1/chat/completions`) and an Anthropic one (`/v1/messages`).

Each is a real HTTP server on a free loopback port that answers a script of replies in
order (the last one repeats), each with a status and an optional delay, and records every
request it got: the real SDKs talk to them exactly as to the real services. The
`primary` and `fallback` fixtures serve one of each; `fake_models` points the real adapters
at them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import http_fake
from tests.support.http_fake import FakeHTTPServer, Received
from vigil.executor.models import ChatModel


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(slots=True, kw_only=True)
class FakeModelServer:
    """Answers POSTs to `path` with `script`, in order; records each request's JSON."""

    path: str
    script: list[Reply] = field(default_factory=list)
    # Instead of the script: a reply made from the request (a model that reads its input).
    respond: Callable[[dict[str, Any]], Reply] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer)

    @property
    def base_url(self) -> str:
        return self._server.url()

    def answer(self, *replies: Reply) -> None:
        self.script = list(replies)
        self.requests.clear()

    def _answer(self, request: Received) -> http_fake.Reply:
        if request.method != "POST" or not request.path.startswith(self.path):
            return http_fake.Reply(status=404)
        body = request.json()
        if self.respond is not None:
            reply = self.respond(body)
        else:
            reply = self.script[min(len(self.requests), len(self.script) - 1)]
        self.requests.append(body)
        self.headers.append(request.headers)
        return http_fake.Reply.json(reply.status, reply.body, delay=reply.delay)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


@contextlib.contextmanager
def serving(path: str) -> Iterator[FakeModelServer]:
    server = FakeModelServer(path=path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def openai_reply(
    content: str = "",
    *,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
    model: str = "local-model",
    tokens: tuple[int, int] = (100, 20),
) -> Reply:
    """A chat completion: text, and tool calls `(name, arguments)`."""
    tool_calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for n, (name, arguments) in enumerate(calls or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": tokens[0],
                "completion_tokens": tokens[1],
                "total_tokens": sum(tokens),
            },
        }
    )


def openai_error(status: int, message: str, code: str | None = None) -> Reply:
    return Reply(
        status=status,
        body={"error": {"message": message, "type": "invalid_request_error", "code": code}},
    )


def anthropic_reply(
    content: str = "",
    *,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
    model: str = "claude-fallback",
    tokens: tuple[int, int] = (120, 30),
) -> Reply:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    blocks += [
        {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": arguments}
        for n, (name, arguments) in enumerate(calls or [])
    ]
    return Reply(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": "tool_use" if calls else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        }
    )


@pytest.fixture
def primary() -> Iterator[FakeModelServer]:
    """A fake OpenAI-compatible server: the agent's primary model."""
    with serving("/v1/chat/completions") as server:
        yield server


@pytest.fixture
def fallback() -> Iterator[FakeModelServer]:
    """A fake Anthropic Messages API: the agent's fallback model."""
    with serving("/v1/messages") as server:
        yield server


@contextlib.asynccontextmanager
async def fake_models(
    primary_url: str,
    fallback: FakeModelServer,
    *,
    primary_model: str = "local",
    fallback_model: str = "claude",
    api_key: str = "k",
    timeout: float = 5.0,
    primary_retries: int = 0,
) -> AsyncIterator[list[ChatModel]]:
    """The two real SDK adapters pointed at the fake servers, primary first; closed on exit."""
    # The SDKs take seconds to import: only the suites that talk to a model pay for it.
    from vigil.executor.adapters.anthropic_chat import AnthropicChatModel
    from vigil.executor.adapters.openai_chat import OpenAIChatModel

    local = OpenAIChatModel(
        base_url=f"{primary_url}/v1",
        model=primary_model,
        timeout=timeout,
        max_retries=primary_retries,
    )
    claude = AnthropicChatModel(
        base_url=fallback.base_url, model=fallback_model, api_key=api_key, max_retries=0
    )
    try:
        yield [local, claude]
    finally:
        await local.close()
        await claude.close()
