"""The chat model port: what the agent step asks of a language model, whoever serves it.

A conversation is a system prompt, turns (user text, assistant text and tool calls, tool
results) and the tools the model may call, described by JSON schemas. An adapter (an
OpenAI-compatible server, Anthropic's Messages API) sends it and returns one `ModelReply`,
or raises `ModelUnavailable` with the reason when the model could not answer (connection,
timeout, 5xx, 429 past its retries, a context too long): the failover chain
(`vigil.executor.failover`) then asks the next model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vigil.common.errors import TransientError


class ModelUnavailable(TransientError):
    """The model gave no usable answer; `reason` says why (for the transcript)."""

    def __init__(self, reason: str, *, model: str = "", healthy: bool = False) -> None:
        super().__init__(f"{model}: {reason}" if model else reason)
        self.reason = reason
        self.model = model
        # The server is fine, this request is not (a context too long, a model id it does
        # not know): no breaker trips.
        self.healthy = healthy


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # as the model wrote them: JSON, not yet validated


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""  # a tool turn: the call it answers
    tool_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    system: str
    turns: tuple[Turn, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 2048
    model: str | None = None  # the step's own model id, instead of the configured one
    tool_choice: Literal["auto", "none"] = "auto"  # "none": the tools stay listed, unused


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReply:
    model: str  # the model that answered, as its server names it
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""


class ChatModel(Protocol):
    @property
    def name(self) -> str:
        """How the transcript names this model (provider and model id)."""

    async def complete(self, conversation: Conversation) -> ModelReply:
        """One reply; raises ModelUnavailable when the model could not answer."""

    async def close(self) -> None:
        """Let go of the connections."""
