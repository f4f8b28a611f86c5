"""No secret leaks out of a running Vigil: canaries in every service's environment, and
secret values in a Source's auth, a webhook Sink's URL, the agent's API key and the API
token, then one alert through a workflow that prints its environment, investigates and
notifies. Everything the run produced is searched for every canary: the log of every
service, every file of the data directory (SQLite, the JetStream store with the KV
bucket), every API answer, each service's metrics and probes, and what the webhook
receiver got. (Traces join the search when the services export them.)"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.definitions import alertmanager_body, firing_alert, write_definitions
from tests.support.llm import FakeModelServer, openai_reply, serving
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def canary(what: str) -> str:
    return f"canary-{what}-{secrets.token_hex(8)}"


ENV_CANARIES = {
    "VIGIL_CANARY": canary("env"),
    "AWS_SECRET_ACCESS_KEY": canary("aws"),
    "GITHUB_TOKEN": canary("github"),
}
SOURCE_TOKEN = canary("source-token")
SINK_KEY = canary("sink-url-key")
MODEL_KEY = canary("model-key")

FINDING = {
    "summary": "the disk holds old logs",
    "rootCause": "log rotation stopped",
    "evidence": [],
    "recommendations": ["rotate the logs"],
    "confidence": 0.6,
}


def definitions_text(receiver: WebhookReceiver) -> list[str]:
    return [
        f"""\
apiVersion: v1
kind: Secret
metadata: {{name: hook-auth, namespace: ops}}
stringData: {{token: {SOURCE_TOKEN}}}
""",
        f"""\
apiVersion: v1
kind: Secret
metadata: {{name: team-hook, namespace: ops}}
stringData: {{url: "{receiver.url}?key={SINK_KEY}"}}
""",
        """\
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: ops}
spec:
  type: alertmanager
  auth: {bearerTokenSecretRef: {name: hook-auth, key: token}}
""",
        """\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team, namespace: ops}
spec:
  type: webhook
  webhook: {urlSecretRef: {name: team-hook, key: url}, timeout: 5s}
""",
        """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: leaky, namespace: ops}
spec:
  trigger: {matchers: ['alertname="DiskFull"']}
  steps:
    - name: environment
      cli: {command: [env], timeout: 30s}
    - name: processes
      cli: {command: [sh, -c, 'tr "\\0" "\\n" < /proc/$$/environ'], timeout: 30s}
    - name: investigate
      agent: {goal: "Why is {{ alert.labels.instance }} full?", tools: [dns], maxIterations: 2}
      timeout: 60s
    - name: report
      notify:
        sinks: [team]
        title: "{{ alert.labels.alertname }}"
        message: "{{ steps.environment.output.stdout }} {{ steps.investigate.output.summary }}"
""",
    ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with serving("/v1/chat/completions") as server:
        server.answer(openai_reply(json.dumps(FINDING)))
        yield server


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver, model: FakeModelServer
) -> Iterator[Platform]:
    definitions = write_definitions(
        tmp_path_factory.mktemp("definitions"), *definitions_text(receiver)
    )
    env = {
        **ENV_CANARIES,
        "VIGIL_EXECUTOR_AGENT_BASE_URL": f"{model.base_url}/v1",
        "VIGIL_EXECUTOR_AGENT_API_KEY": MODEL_KEY,
    }
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


def api_answers(platform: Platform, execution: dict[str, Any]) -> dict[str, str]:
    """Every API answer about the run, by path."""
    paths = [
        "/api/v1/executions",
        f"/api/v1/executions/{execution['id']}",
        f"/api/v1/executions/{execution['id']}/deliveries",
        "/api/v1/alerts",
        "/api/v1/definitions",
        "/api/v1/stats",
        "/metrics",
        "/healthz",
        "/readyz",
    ]
    for step in execution["steps"]:
        output = step.get("output") or {}
        paths += [
            f"/api/v1/artifacts/{output[k]}"
            for k in ("artifactId", "transcriptId")
            if output.get(k)
        ]
    for alert in platform.api.get("/api/v1/alerts", timeout=5).json()["items"]:
        paths.append(
            f"/api/v1/alerts/{alert['namespace']}/{alert['source']}/{alert['fingerprint']}"
        )
    answers = {}
    for path in paths:
        answer = platform.api.get(path, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        answers[path] = answer.text
    return answers


def service_endpoints(platform: Platform) -> dict[str, str]:
    """Metrics and probes of every service but ingest (whose are in `api_answers`), on the
    ops port `vigil up` gave each in its environment."""
    answers = {}
    for service in ("controller", "engine", "executor", "sink"):
        (pid,) = platform.service_pids(service)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        key = f"VIGIL_{service.upper()}_OPS_PORT=".encode()
        port = int(next(item for item in environ if item.startswith(key))[len(key) :])
        for path in ("/metrics", "/healthz", "/readyz"):
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert answer.status_code == 200, (service, path, answer.text)
            answers[f"{service}{path}"] = answer.text
    return answers


def data_files(data_dir: Path) -> dict[str, bytes]:
    """Every file of the data directory but the API token's own."""
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and path.name != "api-token"
    }


def test_no_canary_or_secret_value_appears_in_anything_the_run_produced(
    platform: Platform, receiver: WebhookReceiver, model: FakeModelServer
) -> None:
    body = alertmanager_body([firing_alert("DiskFull", instance="db-1")])
    refused = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert refused.status_code == 401, refused.text  # the Source's token is really checked
    answer = httpx.post(
        f"{platform.url}/hooks/ops/am",
        json=body,
        headers={"Authorization": f"Bearer {SOURCE_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text

    execution = platform.newest_finished(timeout=120)
    assert execution["state"] == "succeeded", execution
    environment = execution["steps"][0]["output"]["stdout"]
    assert "PATH=" in environment  # the steps really printed their environment
    (post,) = receiver.wait_for(1, timeout=60)
    assert post.path.endswith(f"?key={SINK_KEY}")  # the URL secret was really used
    assert model.headers[0]["authorization"] == f"Bearer {MODEL_KEY}"  # so was the API key
    assert platform.token is not None

    data_dir = platform.log_path.parent
    produced: dict[str, bytes] = {
        "vigil up log": platform.logs().encode(),
        "webhook delivery": json.dumps([post.headers, post.body]).encode(),
        **{f"API {path}": text.encode() for path, text in api_answers(platform, execution).items()},
        **{f"service {path}": text.encode() for path, text in service_endpoints(platform).items()},
        **{f"data file {name}": raw for name, raw in data_files(data_dir).items()},
    }
    assert any(name.startswith("data file nats/") for name in produced)  # the bus's store
    secret_values = {
        **ENV_CANARIES,
        "the Source's bearer token": SOURCE_TOKEN,
        "the Sink URL's key": SINK_KEY,
        "the model API key": MODEL_KEY,
        "the API token": platform.token,
    }
    leaks = [
        f"{what} in {where}"
        for where, raw in produced.items()
        for what, value in secret_values.items()
        if value.encode() in raw
    ]
    assert not leaks, "\n".join(leaks)
