"""An OpenAI-compatible chat model (Ollama, vLLM, llama.cpp server, OpenAI itself) through
the `openai` SDK pointed at `base_url`: the agent step's primary model.

Every error of the SDK becomes `ModelUnavailable` with a reason a person can act on; the
SDK's own retries (connection errors, 429, 5xx) run first, `max_retries` times.
"""

from __future__ import annotations

from typing import Any

import openai

from vigil.executor.adapters import model_errors
from vigil.executor.models import (
    Conversation,
    ModelReply,
    ModelUnavailable,
    ToolCall,
    Turn,
    Usage,
)


def _message(turn: Turn) -> dict[str, Any]:
    if turn.role == "tool":
        return {"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content}
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        # Some servers refuse `content: null` beside tool calls: an empty string is safe.
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in turn.tool_calls
        ]
    return message


def unavailable(exc: openai.OpenAIError, model: str) -> ModelUnavailable:
    """The reason the server gave no answer."""
    return model_errors.unavailable(
        exc,
        model,
        timeout=openai.APITimeoutError,
        connection=openai.APIConnectionError,
        status=openai.APIStatusError,
    )


class OpenAIChatModel:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "none",
        timeout: float = 60.0,
        max_retries: int = 1,
    ) -> None:
        self._model = model
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    @property
    def name(self) -> str:
        return f"openai-compatible/{self._model}"

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, conversation: Conversation) -> ModelReply:
        messages = [{"role": "system", "content": conversation.system}]
        messages += [_message(turn) for turn in conversation.turns]
        tools = [
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": spec.parameters,
                },
            }
            for spec in conversation.tools
        ]
        # Always an explicit tool_choice: llama.cpp's server ignores tools without one.
        options: dict[str, Any] = (
            {"tools": tools, "tool_choice": conversation.tool_choice} if tools else {}
        )
        try:
            response = await self._client.chat.completions.create(
                model=conversation.model or self._model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=conversation.max_tokens,
                **options,
            )
        except openai.OpenAIError as exc:
            raise unavailable(exc, self.name) from exc
        if not response.choices:
            raise ModelUnavailable("answered without a choice", model=self.name)
        choice = response.choices[0]
        calls = tuple(
            ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
            for call in choice.message.tool_calls or []
            if call.type == "function"
        )
        usage = response.usage
        return ModelReply(
            model=response.model,
            content=choice.message.content or "",
            tool_calls=calls,
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            stop_reason=str(choice.finish_reason),
        )
