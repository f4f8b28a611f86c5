"""The agent step's models through the real SDKs against fake servers over HTTP: an
OpenAI-compatible primary and Anthropic's Messages API as the fallback. What is checked is
what the transcript will say: which model answered, why each one before it did not, the
tool calls as the model wrote them, and the tokens used."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.support.llm import (
    FakeModelServer,
    Reply,
    anthropic_reply,
    fake_models,
    openai_error,
    openai_reply,
)
from tests.support.nats import free_port
from vigil.common.testing import FakeClock
from vigil.executor.failover import Breaker, Failover
from vigil.executor.models import Conversation, ModelUnavailable, ToolCall, ToolSpec, Turn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOGS = ToolSpec(
    name="logs",
    description="Read a pod's log.",
    parameters={
        "type": "object",
        "properties": {"pod": {"type": "string"}, "tail": {"type": "integer"}},
        "required": ["pod"],
    },
)
QUESTION = Conversation(
    system="You investigate alerts with read-only tools.",
    turns=(Turn(role="user", content="Why is pod api-7f9c crash-looping?"),),
    tools=(LOGS,),
    max_tokens=512,
)


@contextlib.asynccontextmanager
async def chain(
    primary_url: str, fallback: FakeModelServer, *, timeout: float = 5.0
) -> AsyncIterator[Failover]:
    async with fake_models(
        primary_url,
        fallback,
        primary_model="qwen2.5:7b",
        fallback_model="claude-sonnet",
        api_key="test-key",
        timeout=timeout,
        primary_retries=1,
    ) as models:
        yield Failover(models=models)


async def test_the_primary_answers_with_tool_calls_and_tokens(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_reply(calls=[("logs", {"pod": "api-7f9c", "tail": 50})]))

    async with chain(primary.base_url, fallback) as models:
        answer = await models.complete(QUESTION)

    assert answer.answered_by == "openai-compatible/qwen2.5:7b"
    assert answer.failovers == ()
    assert answer.reply.tool_calls == (
        ToolCall(id="call_0", name="logs", arguments='{"pod": "api-7f9c", "tail": 50}'),
    )
    assert (answer.reply.usage.input_tokens, answer.reply.usage.output_tokens) == (100, 20)
    (sent,) = primary.requests
    assert sent["model"] == "qwen2.5:7b"
    assert sent["messages"][0] == {"role": "system", "content": QUESTION.system}
    assert sent["tools"][0]["function"]["name"] == "logs"
    assert sent["tools"][0]["function"]["parameters"] == LOGS.parameters
    assert fallback.requests == []


async def test_a_primary_that_cannot_be_reached_gives_way_to_the_fallback(
    fallback: FakeModelServer,
) -> None:
    fallback.answer(anthropic_reply("The container exits with code 137: OOMKilled."))

    async with chain(f"http://127.0.0.1:{free_port()}", fallback) as models:
        answer = await models.complete(QUESTION)

    assert answer.answered_by == "anthropic/claude-sonnet"
    assert answer.reply.content == "The container exits with code 137: OOMKilled."
    (reason,) = answer.failovers
    assert reason.startswith("openai-compatible/qwen2.5:7b: cannot connect")
    assert "All connection attempts failed" in reason  # the cause, not only the SDK's words
    (sent,) = fallback.requests
    assert sent["system"] == QUESTION.system
    assert sent["tools"] == [
        {"name": "logs", "description": "Read a pod's log.", "input_schema": LOGS.parameters}
    ]
    assert fallback.headers[0]["authorization"] == "Bearer test-key"  # the key, sent by the SDK


async def test_a_primary_that_times_out_gives_way_to_the_fallback(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(Reply(body={}, delay=2.0))
    fallback.answer(anthropic_reply("done"))

    async with chain(primary.base_url, fallback, timeout=0.3) as models:
        answer = await models.complete(QUESTION)

    assert answer.answered_by == "anthropic/claude-sonnet"
    assert answer.failovers == ("openai-compatible/qwen2.5:7b: timed out",)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (openai_error(500, "model crashed"), "answered 500"),
        (openai_error(429, "slow down"), "answered 429"),
        (
            openai_error(
                400,
                "This model's maximum context length is 4096 tokens",
                code="context_length_exceeded",
            ),
            "context too long (400)",
        ),
    ],
    ids=["server-error", "rate-limited", "context-too-long"],
)
async def test_errors_worth_another_model_give_way_to_the_fallback(
    primary: FakeModelServer, fallback: FakeModelServer, reply: Reply, reason: str
) -> None:
    primary.answer(reply)
    fallback.answer(anthropic_reply("done"))

    async with chain(primary.base_url, fallback) as models:
        answer = await models.complete(QUESTION)

    assert answer.answered_by == "anthropic/claude-sonnet"
    (failover,) = answer.failovers
    assert reason in failover
    # 5xx and 429 are retried by the SDK first (its retry budget, here one retry).
    expected = 1 if reason.startswith("context") else 2
    assert len(primary.requests) == expected


async def test_when_both_are_down_the_turn_fails_with_both_reasons(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_error(503, "loading"))
    fallback.answer(
        Reply(
            status=529,
            body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    )

    async with chain(primary.base_url, fallback) as models:
        with pytest.raises(ModelUnavailable) as failed:
            await models.complete(QUESTION)

    message = str(failed.value)
    assert "openai-compatible/qwen2.5:7b: answered 503" in message
    assert "anthropic/claude-sonnet: answered 529" in message


async def test_a_tool_round_trip_is_sent_as_each_provider_expects(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_reply("It was OOMKilled."))
    fallback.answer(anthropic_reply("It was OOMKilled."))
    call = ToolCall(id="call_0", name="logs", arguments='{"pod": "api-7f9c"}')
    conversation = Conversation(
        system=QUESTION.system,
        turns=(
            *QUESTION.turns,
            Turn(role="assistant", content="", tool_calls=(call,)),
            Turn(role="tool", tool_call_id="call_0", tool_name="logs", content="OOMKilled"),
        ),
        tools=(LOGS,),
    )

    async with chain(primary.base_url, fallback) as models:
        await models.complete(conversation)
        await models.complete(conversation, skip=1)  # the fallback alone

    sent = primary.requests[0]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "logs", "arguments": '{"pod": "api-7f9c"}'},
            }
        ],
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "call_0", "content": "OOMKilled"}
    claude = fallback.requests[0]["messages"]
    assert claude[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_0", "name": "logs", "input": {"pod": "api-7f9c"}}
        ],
    }
    assert claude[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_0", "content": "OOMKilled"}],
    }


async def test_with_no_model_configured_the_turn_fails_saying_so() -> None:
    with pytest.raises(ModelUnavailable, match="no model is configured"):
        await Failover(models=[]).complete(QUESTION)


async def test_a_primary_that_keeps_failing_is_passed_over_until_its_breaker_closes(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    clock = FakeClock()
    primary.answer(openai_error(503, "model is loading"))
    fallback.answer(anthropic_reply("answered by the fallback"))
    async with chain(primary.base_url, fallback) as models:
        failover = replace(models, breaker=Breaker(failures=2, seconds=30, clock=clock))
        for _ in range(3):
            answer = await failover.complete(QUESTION)
        asked_while_open = len(primary.requests)
        clock.advance(31)
        primary.answer(openai_reply("the primary is back"))
        back = await failover.complete(QUESTION)

    # two turns asked it (each with one SDK retry), the third passed it over
    assert asked_while_open == 4
    assert answer.failovers == (
        "openai-compatible/qwen2.5:7b: passed over: unavailable 2 times in a row, "
        "tried again in 30s",
    )
    assert back.answered_by == "openai-compatible/qwen2.5:7b"


async def test_a_breaker_never_leaves_a_turn_without_a_model(primary: FakeModelServer) -> None:
    breaker = Breaker(failures=1, seconds=60, clock=FakeClock())
    breaker.failed("openai-compatible/qwen2.5:7b")
    primary.answer(openai_reply("still asked"))
    async with fake_models(primary.base_url, primary, primary_model="qwen2.5:7b") as models:
        failover = Failover(models=models[:1], breaker=breaker)
        answer = await failover.complete(QUESTION)

    assert answer.reply.content == "still asked"


async def test_a_context_too_long_trips_no_breaker(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    """The model is healthy; only this conversation is too long for it."""
    breaker = Breaker(failures=1, seconds=60, clock=FakeClock())
    primary.answer(openai_error(400, "maximum context length is 4096 tokens"))
    fallback.answer(anthropic_reply("fine"))
    async with chain(primary.base_url, fallback) as models:
        await replace(models, breaker=breaker).complete(QUESTION)

    assert breaker.passed_over("openai-compatible/qwen2.5:7b") == ""


def test_an_open_breaker_lets_one_try_through_and_reopens_when_it_fails() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=1, seconds=30, clock=clock)
    breaker.failed("m")
    assert breaker.passed_over("m").endswith("tried again in 30s")

    clock.advance(30)
    assert breaker.passed_over("m") == "", "one turn tries it"
    assert breaker.passed_over("m") == (
        "passed over: unavailable 1 times in a row, another step is trying it"
    )
    breaker.failed("m")
    assert breaker.passed_over("m").endswith("tried again in 30s"), "open again"

    clock.advance(30)
    assert breaker.passed_over("m") == ""
    breaker.answered("m")
    assert breaker.passed_over("m") == ""
    assert breaker.passed_over("m") == "", "closed: every turn asks it"


def test_a_try_that_never_came_back_is_given_up() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=1, seconds=30, clock=clock)
    breaker.failed("m")
    clock.advance(30)
    assert breaker.passed_over("m") == ""  # this try's step is cancelled: no answer, ever
    clock.advance(31)
    assert breaker.passed_over("m") == "", "another turn tries it"


async def test_a_model_id_the_server_does_not_know_trips_no_breaker(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    """A step's own model id that the server refuses (404) says nothing of the server."""
    breaker = Breaker(failures=1, seconds=60, clock=FakeClock())
    primary.answer(openai_error(404, "model 'qwen9' not found"))
    fallback.answer(anthropic_reply("fine"))
    async with chain(primary.base_url, fallback) as models:
        asked = dataclasses.replace(QUESTION, model="qwen9")
        await replace(models, breaker=breaker).complete(asked)

    assert breaker.passed_over("openai-compatible/qwen9") == ""
    assert breaker.passed_over("openai-compatible/qwen2.5:7b") == ""
