"""An agent step end to end through `vigil up`, with a fake OpenAI-compatible model server
as the primary and a fake Anthropic server as the fallback: the alert goes in, the engine
dispatches the investigation, the executor asks the models (the primary is down, the
fallback answers after a `dns` tool call), and the finding reaches the next step's
template and the API, with the transcript as an artifact."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    log_sink,
    write_definitions,
)
from tests.support.llm import FakeModelServer, anthropic_reply, openai_error, serving
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WORKFLOW = """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: crashloop, namespace: ops}
spec:
  trigger: {matchers: ['alertname="CrashLoop"']}
  steps:
    - name: investigate
      agent:
        goal: "Find why {{ alert.labels.pod }} crash-loops."
        tools: [dns]
        maxIterations: 4
      timeout: 60s
    - name: report
      notify:
        sinks: [console]
        title: "{{ steps.investigate.output.rootCause }}"
"""
FINDING = {
    "summary": "api-7f9c cannot resolve its database",
    "rootCause": "the database host name does not resolve",
    "evidence": [{"claim": "localhost resolves, the database does not", "toolCall": "toolu_0"}],
    "recommendations": ["fix the DB_HOST setting"],
    "confidence": 0.7,
}


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[FakeModelServer, FakeModelServer]]:
    with serving("/v1/chat/completions") as primary, serving("/v1/messages") as fallback:
        yield primary, fallback


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, models: tuple[FakeModelServer, FakeModelServer]
) -> Iterator[Platform]:
    primary, fallback = models
    definitions = write_definitions(
        tmp_path_factory.mktemp("definitions"),
        alertmanager_source("ops"),
        log_sink("ops"),
        WORKFLOW,
    )
    env = {
        "VIGIL_EXECUTOR_AGENT_BASE_URL": f"{primary.base_url}/v1",
        "VIGIL_EXECUTOR_ANTHROPIC_API_KEY": "test-key",
        "VIGIL_EXECUTOR_ANTHROPIC_BASE_URL": fallback.base_url,
    }
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


def test_an_investigation_fails_over_and_its_finding_reaches_the_next_step(
    platform: Platform, models: tuple[FakeModelServer, FakeModelServer]
) -> None:
    primary, fallback = models
    primary.answer(openai_error(503, "model loading"))
    fallback.answer(
        anthropic_reply(calls=[("dns", {"name": "localhost"})]),
        anthropic_reply(json.dumps(FINDING)),
    )
    body = alertmanager_body([firing_alert("CrashLoop", pod="api-7f9c")])
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert answer.status_code == 200, answer.text

    execution = platform.newest_finished()

    assert execution["state"] == "succeeded", execution
    investigate, report = execution["steps"]
    output = investigate["output"]
    assert output["rootCause"] == "the database host name does not resolve"
    assert output["toolCalls"] == 1
    assert report["output"]["deliveries"][0]["status"] == "delivered"
    transcript = platform.api.get(f"/api/v1/artifacts/{output['transcriptId']}", timeout=5).json()
    turns = json.loads(transcript["content"])
    assert [t["event"] for t in turns] == ["turn", "tool", "turn"]
    assert turns[0]["answeredBy"] == "anthropic/claude-sonnet-4-5"
    assert turns[0]["failovers"][0].startswith("openai-compatible/qwen2.5:7b: answered 503")
    assert turns[1]["output"].startswith("localhost: ")
    goal = fallback.requests[0]["messages"][0]["content"]
    assert goal == "Find why api-7f9c crash-loops."
    assert "the database host name does not resolve" in platform.logs()
