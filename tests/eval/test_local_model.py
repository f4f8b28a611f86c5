"""Agent steps against a real local model (llama.cpp's server, SmolLM2-135M), with a
scripted Claude as the fallback, over three of the scenarios.

A 135M model investigates badly: absurd arguments, malformed JSON, the same call again,
tool calls forever. What must hold is what the agent promises whatever the model does:
each step ends, in a valid finding (the local model's or, after a recorded failover, the
fallback's); evidence cites calls that answered; only reads reach the cluster, and no call
whose arguments failed validation reaches it at all; the budgets hold.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

import pytest
from evals.run import Verdict, investigate
from evals.scenario import SCENARIOS, Scenario, load

from tests.support.llm import FakeModelServer, Reply, anthropic_reply, fake_models, serving
from tests.support.local_model import ALIAS, local_model
from vigil.executor.models import ChatModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

__all__ = ["local_model"]

NAMES = ["crash-loop", "oom-kill", "readiness-probe"]
# Fewer turns than the scenarios allow: a turn of this model on a loaded 2-core machine
# can take half a minute, and the step timeout must hold them all.
MAX_ITERATIONS = 5


def answered_calls(messages: list[dict[str, Any]]) -> list[str]:
    """The ids of the tool calls in an Anthropic conversation whose result is no error."""
    return [
        block["tool_use_id"]
        for message in messages
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
        and not str(block.get("content", "")).split("\n", 2)[1].startswith("error:")
    ]


def fallback_claude(scenario: Scenario) -> Callable[[dict[str, Any]], Reply]:
    """A fallback that behaves as Claude does: with the tools open, it reads the log the
    scenario planted instructions in (once); then, or when the tools are closed, it answers
    citing a call that answered."""
    namespace, pod = scenario.injection.into.split("/")

    def respond(request: dict[str, Any]) -> Reply:
        cited = answered_calls(request["messages"])
        closed = request.get("tool_choice", {}).get("type") == "none"
        if not closed and "toolu_log" not in cited:
            reply = anthropic_reply(
                calls=[("logs", {"namespace": namespace, "pod": pod, "tail": 37})]
            )
            reply.body["content"][0]["id"] = "toolu_log"
            return reply
        evidence = [{"claim": "the tool output shows it", "toolCall": c} for c in cited[-1:]]
        return anthropic_reply(
            json.dumps(
                {
                    "summary": "From what the tools showed.",
                    "rootCause": scenario.expected.finding,
                    "evidence": evidence,
                    "recommendations": [],
                    "confidence": 0.5,
                }
            )
        )

    return respond


@contextlib.asynccontextmanager
async def models(base_url: str, fallback: FakeModelServer) -> AsyncIterator[list[ChatModel]]:
    async with fake_models(
        base_url.removesuffix("/v1"), fallback, primary_model=ALIAS, timeout=120
    ) as chain:
        yield chain


def expected_path(tool: str, args: dict[str, Any]) -> str:
    """The API path a call with these (validated) arguments reads."""
    if tool == "logs":
        return f"/api/v1/namespaces/{args['namespace']}/pods/{args['pod']}/log"
    kind, name = args["kind"], args.get("name")
    if kind == "nodes":
        return "/api/v1/nodes" + (f"/{name}" if name else "")
    group = "/apis/apps/v1" if kind in {"deployments", "replicasets"} else "/api/v1"
    path = f"{group}/namespaces/{args.get('namespace')}/{kind}"
    return path + (f"/{name}" if name and kind != "events" else "")  # events: listed


def unexplained_requests(verdict: Verdict) -> list[str]:
    """Cluster requests that no call with valid arguments leads to (each call reads once)."""
    arguments: dict[str, Any] = {}
    for turn in (e for e in verdict.transcript if e["event"] == "turn"):
        for call in turn["toolCalls"]:
            with contextlib.suppress(json.JSONDecodeError):
                arguments[call["id"]] = json.loads(call["arguments"], strict=False)  # as Toolbox
    expected = [
        expected_path(e["tool"], arguments[e["call"]])
        for e in verdict.transcript
        if e["event"] == "tool" and not e["refused"] and e["tool"] in {"kubernetes", "logs"}
    ]
    unexplained = []
    for method, path in verdict.cluster_requests:
        if unquote(path) in expected:
            expected.remove(unquote(path))
        else:
            unexplained.append(f"{method} {path}")
    return unexplained


@pytest.mark.parametrize("name", NAMES)
async def test_a_real_small_model_ends_in_a_finding_or_a_recorded_failover(
    name: str, local_model: str
) -> None:
    scenario = load(SCENARIOS / f"{name}.yaml").model_copy(
        update={"max_iterations": MAX_ITERATIONS}
    )
    with serving("/v1/messages") as fallback:
        fallback.respond = fallback_claude(scenario)
        async with models(local_model, fallback) as chain:
            verdict = await investigate(scenario, chain, timeout_seconds=540)

    assert "answered" not in verdict.problems, verdict.problems
    assert {"read-only", "budgets"}.isdisjoint(verdict.problems), verdict.problems
    # Evidence may be empty when no call answered (all refused or not found), never wrong.
    assert not verdict.problems.get("evidence", "").startswith("cites"), verdict.problems
    assert unexplained_requests(verdict) == []
    turns = [e for e in verdict.transcript if e["event"] == "turn"]
    local_turns = [t for t in turns if t["answeredBy"] == f"openai-compatible/{ALIAS}"]
    assert local_turns, "the local model answered no turn"
    if turns[-1]["answeredBy"] != f"openai-compatible/{ALIAS}":
        reasons = [e for e in verdict.transcript if e["event"] == "failover"] + [
            t for t in turns if t["failovers"]
        ]
        assert reasons, "the fallback answered without a recorded reason"
