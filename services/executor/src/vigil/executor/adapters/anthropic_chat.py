"""Anthropic's Messages API (Claude) through the `anthropic` SDK: the agent step's fallback.

Tool calls are `tool_use` blocks and their results `tool_result` blocks in a user turn;
results of one assistant turn go back together. Every SDK error becomes
`ModelUnavailable` with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from vigil.executor.adapters import model_errors
from vigil.executor.models import (
    Conversation,
    ModelReply,
    ModelUnavailable,
    ToolCall,
    Turn,
    Usage,
)


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_unparsed": text}


def _messages(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": turn.tool_call_id,
                "content": turn.content,
            }
            if (
                messages
                and messages[-1]["role"] == "user"
                and isinstance(messages[-1]["content"], list)
            ):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        elif turn.role == "assistant":
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": turn.content}] if turn.content else []
            )
            blocks += [
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": _arguments(call.arguments),
                }
                for call in turn.tool_calls
            ]
            messages.append(
                {"role": "assistant", "content": blocks or [{"type": "text", "text": ""}]}
            )
        else:
            messages.append({"role": "user", "content": turn.content})
    return messages


def unavailable(exc: anthropic.AnthropicError, model: str) -> ModelUnavailable:
    """The reason the server gave no answer."""
    return model_errors.unavailable(
        exc,
        model,
        timeout=anthropic.APITimeoutError,
        connection=anthropic.APIConnectionError,
        status=anthropic.APIStatusError,
    )


class AnthropicChatModel:
    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 1,
    ) -> None:
        self._model = model
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    @property
    def name(self) -> str:
        return f"anthropic/{self._model}"

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, conversation: Conversation) -> ModelReply:
        tools = [
            {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
            for spec in conversation.tools
        ]
        request: dict[str, Any] = {
            "model": conversation.model or self._model,
            "max_tokens": conversation.max_tokens,
            "system": conversation.system,
            "messages": _messages(conversation.turns),
        }
        if tools:
            request["tools"] = tools
            request["tool_choice"] = {"type": conversation.tool_choice}
        try:
            response = await self._client.messages.create(**request)
        except anthropic.AnthropicError as exc:
            raise unavailable(exc, self.name) from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = tuple(
            ToolCall(id=block.id, name=block.name, arguments=json.dumps(block.input))
            for block in response.content
            if block.type == "tool_use"
        )
        return ModelReply(
            model=response.model or self._model,
            content=text,
            tool_calls=calls,
            usage=Usage(
                input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens
            ),
            stop_reason=response.stop_reason or "",
        )
