"""The agent step's runner and its result, with the real SDKs against the fake model
servers: the step output later steps template over, the transcript artifact, and the
messages a user gets when something is not configured."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from tests.support.llm import FakeModelServer, Reply, anthropic_reply, fake_models, openai_reply
from vigil.common.messages import AgentStep, StepRequest
from vigil.common.testing import EPOCH
from vigil.executor.agent import AgentRunner
from vigil.executor.domain.results import AgentOutcome, step_result

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ANSWER = json.dumps(
    {
        "summary": "api-7f9c is OOMKilled",
        "rootCause": "memory limit too low",
        "evidence": [],
        "recommendations": ["raise the limit"],
        "confidence": 0.7,
    }
)


def request(**agent: object) -> StepRequest:
    return StepRequest(
        execution_id="01EX",
        namespace="shop",
        workflow="crashloop",
        step="investigate",
        attempt=1,
        idempotency_key="01EX/investigate/1",
        agent=AgentStep.model_validate(
            {"goal": "Why is api-7f9c crash-looping?", "timeout_seconds": 20, **agent}
        ),
    )


@contextlib.asynccontextmanager
async def runner(primary: FakeModelServer, fallback: FakeModelServer) -> AsyncIterator[AgentRunner]:
    async with fake_models(primary.base_url, fallback) as models:
        yield AgentRunner(models=models, tools=[])


async def test_a_finding_becomes_the_step_output_with_its_transcript_kept(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_reply(ANSWER, tokens=(300, 40)))
    step = request()
    async with runner(primary, fallback) as agent:
        outcome = await agent.run(step, asyncio.Event())

    settled = step_result(step, outcome, started_at=EPOCH, finished_at=EPOCH, output_limit=1024)
    result = settled.result
    assert result.outcome == "succeeded"
    assert result.output == {
        "summary": "api-7f9c is OOMKilled",
        "rootCause": "memory limit too low",
        "evidence": [],
        "recommendations": ["raise the limit"],
        "confidence": 0.7,
        "toolCalls": 0,
        "tokens": 340,
        "transcriptId": "01EX/investigate/1/transcript",
    }
    assert settled.artifact is not None
    assert settled.artifact.content_type == "application/json"
    (turn,) = json.loads(settled.artifact.content)
    assert turn["answeredBy"] == "openai-compatible/local"


async def test_the_output_schema_fields_join_the_step_output(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_reply(json.dumps({**json.loads(ANSWER), "owner": "team-payments"})))
    step = request(
        output_schema={
            "type": "object",
            "properties": {"owner": {"type": "string"}},
            "required": ["owner"],
        }
    )
    async with runner(primary, fallback) as agent:
        outcome = await agent.run(step, asyncio.Event())

    settled = step_result(step, outcome, started_at=EPOCH, finished_at=EPOCH, output_limit=1024)
    output = settled.result.output or {}
    assert (output["owner"], output["rootCause"]) == ("team-payments", "memory limit too low")


async def test_the_step_may_choose_the_provider_and_the_model(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    fallback.answer(anthropic_reply(ANSWER))
    async with runner(primary, fallback) as agent:
        outcome = await agent.run(
            request(provider="anthropic", model="claude-opus"), asyncio.Event()
        )

    assert isinstance(outcome, AgentOutcome)
    assert outcome.finding is not None
    assert primary.requests == []
    assert fallback.requests[0]["model"] == "claude-opus"


async def test_without_a_model_the_step_fails_at_once_saying_how_to_configure_one() -> None:
    step = request()
    outcome = await AgentRunner(models=[], tools=[]).run(step, asyncio.Event())
    result = step_result(
        step, outcome, started_at=EPOCH, finished_at=EPOCH, output_limit=1024
    ).result
    assert result.outcome == "failed"
    assert result.error is not None
    assert "VIGIL_EXECUTOR_AGENT_BASE_URL" in result.error
    assert "VIGIL_EXECUTOR_ANTHROPIC_API_KEY" in result.error


async def test_a_tool_not_configured_here_fails_the_step_naming_it(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    async with runner(primary, fallback) as agent:
        outcome = await agent.run(request(tools=["prometheus"]), asyncio.Event())
    assert isinstance(outcome, AgentOutcome)
    assert outcome.error == "tools not configured here: prometheus (configured: none)"
    assert primary.requests == []


async def test_the_timeout_ends_the_investigation_and_keeps_its_transcript(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(openai_reply("thinking…"), Reply(body={}, delay=5.0))
    step = request(timeout_seconds=1)
    async with runner(primary, fallback) as agent:
        outcome = await agent.run(step, asyncio.Event())

    result = step_result(
        step, outcome, started_at=EPOCH, finished_at=EPOCH, output_limit=1024
    ).result
    assert (result.outcome, result.error) == ("timed_out", "timed out after 1s")
    assert isinstance(outcome, AgentOutcome)
    assert [e["event"] for e in outcome.transcript] == ["turn"]


async def test_a_cancellation_notice_ends_the_investigation(
    primary: FakeModelServer, fallback: FakeModelServer
) -> None:
    primary.answer(Reply(body={}, delay=5.0))
    cancel = asyncio.Event()
    async with runner(primary, fallback) as agent:
        running = asyncio.create_task(agent.run(request(), cancel))
        async with asyncio.timeout(5):
            while not primary.requests:
                await asyncio.sleep(0.02)
        cancel.set()
        outcome = await asyncio.wait_for(running, 5)
    assert isinstance(outcome, AgentOutcome)
    assert outcome.cancelled is True
