"""The agent examples (`examples/agent`) as a user runs them, with every outside system a
fake on loopback: an OpenAI-compatible model server scripted to make one round of tool
calls and then answer a finding that cites them, a Kubernetes API, a Prometheus, and the
service the custom workflow probes.

`vigil validate` accepts the folder. `vigil test` runs custom-diagnosis: the cli probe's
output reaches the agent's goal, and the escalation follows the finding's confidence; and
crash-loop with the cluster tools switched on (`VIGIL_EXECUTOR_AGENT_KUBERNETES_TOOLS`).
high-cpu and crash-loop run through `vigil up` too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.http_fake import FakeHTTPServer, Received, Reply
from tests.support.llm import FakeModelServer, openai_reply, serving
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "agent"
RUN_TIMEOUT_SECONDS = 60
CHECKOUT_POD = "checkout-7d9f8b6c4-x2x9q"
PAYMENTS_POD = "payments-5c6d7f8b9-kq4zt"


# --- fakes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Canned:
    status: int
    content_type: str
    body: str


@dataclass(slots=True, kw_only=True)
class CannedHttp:
    """A loopback HTTP server answering GETs by path (the query ignored) with canned
    bodies; records every request, whatever its verb, as `METHOD path?query`."""

    routes: dict[str, Canned]
    requests: list[str] = field(default_factory=list)
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer)

    @property
    def url(self) -> str:
        return self._server.url()

    def _answer(self, request: Received) -> Reply:
        self.requests.append(f"{request.method} {request.path}")
        if request.method != "GET":
            return Reply(status=501)  # every verb is recorded; only GET is answered
        canned = self.routes.get(request.path.partition("?")[0])
        if canned is None:
            canned = Canned(status=404, content_type="text/plain", body="not found")
        return Reply(
            status=canned.status, body=canned.body.encode(), content_type=canned.content_type
        )

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


def json_answer(body: dict[str, Any]) -> Canned:
    return Canned(status=200, content_type="application/json", body=json.dumps(body))


def text_answer(body: str) -> Canned:
    return Canned(status=200, content_type="text/plain", body=body)


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with serving("/v1/chat/completions") as server:
        yield server


@pytest.fixture(scope="module")
def cluster() -> Iterator[CannedHttp]:
    """The Kubernetes API, as far as the two investigations read it."""
    pods = "/api/v1/namespaces/shop/pods"
    server = CannedHttp(
        routes={
            f"{pods}/{CHECKOUT_POD}": json_answer(
                pod(CHECKOUT_POD, {"running": {}}, restarts=0, last=None)
            ),
            f"{pods}/{PAYMENTS_POD}": json_answer(
                pod(
                    PAYMENTS_POD,
                    {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                    restarts=14,
                    last={"reason": "Error", "exitCode": 2},
                )
            ),
            f"{pods}/{PAYMENTS_POD}/log": text_answer(
                "starting payments 3.1.0\npanic: PAYMENTS_DB_URL is not set\n"
            ),
        }
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus() -> Iterator[CannedHttp]:
    sample = {"metric": {"namespace": "shop", "pod": CHECKOUT_POD}, "value": [1764000000, "0.98"]}
    server = CannedHttp(
        routes={
            "/api/v1/query": json_answer(
                {"status": "success", "data": {"resultType": "vector", "result": [sample]}}
            )
        }
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def checkout() -> Iterator[CannedHttp]:
    """The service custom-diagnosis probes (with curl) and the agent checks (tcp_check)."""
    server = CannedHttp(routes={"/healthz": text_answer("ok\n")})
    server.start()
    yield server
    server.stop()


def pod(
    name: str, state: dict[str, Any], *, restarts: int, last: dict[str, Any] | None
) -> dict[str, Any]:
    """A pod as the API server answers a GET, with one container in `state`."""
    container: dict[str, Any] = {
        "name": name.rsplit("-", 2)[0],  # the pod of a Deployment
        "ready": "running" in state,
        "restartCount": restarts,
        "state": state,
    }
    if last is not None:
        container["lastState"] = {"terminated": last}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"nodeName": "node-1", "containers": [{"name": container["name"]}]},
        "status": {"phase": "Running", "containerStatuses": [container]},
    }


# --- what the examples ship ---------------------------------------------------------------


def example_alert(alertname: str) -> dict[str, Any]:
    """The one alert named `alertname` of examples/agent/alerts.json."""
    payload = json.loads((EXAMPLES / "alerts.json").read_text(encoding="utf-8"))
    (alert,) = [a for a in payload["alerts"] if a["labels"]["alertname"] == alertname]
    assert isinstance(alert, dict)
    return alert


def payload_of(alert: dict[str, Any]) -> dict[str, Any]:
    """examples/agent/alerts.json holding only `alert`."""
    payload = json.loads((EXAMPLES / "alerts.json").read_text(encoding="utf-8"))
    assert isinstance(payload, dict)
    return {**payload, "alerts": [alert]}


def finding(root_cause: str, *, confidence: float, cites: list[str]) -> str:
    return json.dumps(
        {
            "summary": f"investigated: {root_cause}",
            "rootCause": root_cause,
            "evidence": [
                {"claim": f"tool call {call} shows it", "toolCall": call} for call in cites
            ],
            "recommendations": ["first do this", "then that"],
            "confidence": confidence,
        }
    )


def goal_asked(model: FakeModelServer) -> str:
    """The goal the first request put to the model (after the system prompt)."""
    user = [m for m in model.requests[0]["messages"] if m["role"] == "user"]
    content = user[0]["content"]
    assert isinstance(content, str)
    return content


def tools_offered(model: FakeModelServer) -> set[str]:
    return {tool["function"]["name"] for tool in model.requests[0]["tools"]}


def tool_outputs(model: FakeModelServer) -> str:
    """What the tools answered, as the model was given it in the finding's turn."""
    return "\n".join(m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool")


# --- vigil validate -----------------------------------------------------------------------


def test_the_agent_examples_validate_without_a_problem() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "validate", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    *resources, total = run.stdout.splitlines()
    assert total == "6 valid"
    assert all(line.startswith("ok ") for line in resources), run.stdout
    for workflow in ("high-cpu", "crash-loop", "custom-diagnosis"):
        assert f"ok    Workflow demo/{workflow} " in run.stdout
    assert run.stderr == ""


# --- vigil test: custom-diagnosis ---------------------------------------------------------


def vigil_test(
    alert: Path,
    model: FakeModelServer,
    workflow: str = "demo/custom-diagnosis",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "test",
            str(EXAMPLES),
            "--workflow",
            workflow,
            "--alert",
            str(alert),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
        env={
            **os.environ,
            "VIGIL_EXECUTOR_AGENT_BASE_URL": f"{model.base_url}/v1",
            "VIGIL_EXECUTOR_AGENT_HTTP_ALLOWED_HOSTS": "127.0.0.1",
            **(env or {}),
        },
    )


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_vigil_test_gives_the_agent_the_cluster_tools_when_asked(
    tmp_path: Path, model: FakeModelServer, cluster: CannedHttp
) -> None:
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(
        json.dumps(payload_of(example_alert("KubePodCrashLooping"))), encoding="utf-8"
    )
    root_cause = "PAYMENTS_DB_URL is not set in payments 3.1.0"
    model.answer(
        openai_reply(calls=[("logs", {"namespace": "shop", "pod": PAYMENTS_POD})]),
        openai_reply(finding(root_cause, confidence=0.9, cites=["call_0"])),
    )
    env = {
        "VIGIL_EXECUTOR_AGENT_KUBERNETES_TOOLS": "true",
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)),
    }

    run = vigil_test(alert_file, model, "demo/crash-loop", env)

    assert run.returncode == 0, run.stdout + run.stderr
    assert root_cause in run.stdout
    assert tools_offered(model) == {"kubernetes", "logs", "runbook"}
    assert "panic: PAYMENTS_DB_URL is not set" in tool_outputs(model)


@pytest.mark.parametrize(("confidence", "escalated"), [(0.9, True), (0.4, False)])
def test_custom_diagnosis_probes_diagnoses_and_escalates_only_when_confident(
    tmp_path: Path,
    model: FakeModelServer,
    checkout: CannedHttp,
    confidence: float,
    escalated: bool,
) -> None:
    alert = example_alert("CheckoutLatencyHigh")
    alert["labels"]["url"] = f"{checkout.url}/healthz"  # loopback: the probe stays here
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(json.dumps(payload_of(alert)), encoding="utf-8")
    port = int(checkout.url.rsplit(":", 1)[1])
    root_cause = "the checkout pods wait on a saturated connection pool"
    model.answer(
        openai_reply(calls=[("tcp_check", {"host": "127.0.0.1", "port": port})]),
        openai_reply(finding(root_cause, confidence=confidence, cites=["call_0"])),
    )

    run = vigil_test(alert_file, model)

    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert checkout.requests == ["GET /healthz"]  # curl really probed the service
    assert re.search(r"^\s+diagnose\s+succeeded\s", out, re.MULTILINE), out
    assert f"title:   checkout is slow: {root_cause}" in out
    assert "message: Probe: 200 " in out
    assert "message: - then that" in out
    assert "execution succeeded" in out
    # The probe's result is in the goal; the agent got the step's tools and used one.
    assert re.search(r"just now gave \(HTTP status, seconds\):\n200 \d", goal_asked(model))
    assert tools_offered(model) == {"dns", "tcp_check", "http_get", "runbook"}
    assert f"127.0.0.1:{port}: open in " in tool_outputs(model)
    paged = f"title:   Paging for checkout: {root_cause}"
    if escalated:
        assert "notify escalate -> oncall (not sent)" in out
        assert paged in out
    else:
        assert "notify escalate" not in out
        assert paged not in out
        assert re.search(r"^\s+escalate\s+skipped", out, re.MULTILINE), out


# --- vigil up: high-cpu and crash-loop ----------------------------------------------------


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    model: FakeModelServer,
    cluster: CannedHttp,
    prometheus: CannedHttp,
) -> Iterator[Platform]:
    kubeconfig = write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", cluster.url)
    env = {
        "VIGIL_EXECUTOR_AGENT_BASE_URL": f"{model.base_url}/v1",
        "VIGIL_EXECUTOR_AGENT_KUBERNETES_TOOLS": "true",
        "VIGIL_EXECUTOR_AGENT_PROMETHEUS_URL": prometheus.url,
        "VIGIL_EXECUTOR_AGENT_HTTP_ALLOWED_HOSTS": "runbooks.example.com",
        "KUBECONFIG": str(kubeconfig),
    }
    with running_platform(
        definitions=EXAMPLES, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


def investigated(platform: Platform, alertname: str, workflow: str) -> dict[str, Any]:
    """Post the example's `alertname` alert; the finished execution of `workflow`."""
    body = payload_of(example_alert(alertname))
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return platform.newest_finished(namespace="demo", workflow=workflow)


def notified(platform: Platform, *texts: str) -> str:
    """The log sink's notification lines, once they hold every one of `texts`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [
            line
            for line in platform.logs().splitlines()
            if line.startswith("sink") and " notification " in line
        ]
        if all(any(text in line for line in lines) for text in texts):
            return "\n".join(lines)
        time.sleep(0.2)
    raise AssertionError(platform.logs()[-4000:])


def test_high_cpu_reports_the_root_cause_and_each_recommendation(
    platform: Platform, model: FakeModelServer, cluster: CannedHttp, prometheus: CannedHttp
) -> None:
    root_cause = "checkout recomputes every price on each request since 2.14.0"
    query = f'rate(container_cpu_usage_seconds_total{{pod="{CHECKOUT_POD}"}}[5m])'
    model.answer(
        openai_reply(
            calls=[
                ("prometheus", {"query": query}),
                ("kubernetes", {"kind": "pods", "namespace": "shop", "name": CHECKOUT_POD}),
            ]
        ),
        openai_reply(finding(root_cause, confidence=0.8, cites=["call_0", "call_1"])),
    )

    execution = investigated(platform, "HighCPU", "high-cpu")

    assert execution["state"] == "succeeded", execution
    assert execution["steps"][0]["output"]["toolCalls"] == 2
    assert tools_offered(model) == {"prometheus", "kubernetes", "logs"}
    assert "uses more CPU than expected" in goal_asked(model)
    outputs = tool_outputs(model)
    assert f'{{namespace="shop", pod="{CHECKOUT_POD}"}}: 0.98' in outputs
    assert f"pod shop/{CHECKOUT_POD}: Running, ready 1/1" in outputs
    assert any(r.startswith("GET /api/v1/query?") for r in prometheus.requests)
    assert f"GET /api/v1/namespaces/shop/pods/{CHECKOUT_POD}" in cluster.requests
    assert all(r.startswith("GET ") for r in cluster.requests)  # tools only read
    lines = notified(platform, root_cause)
    assert f"HighCPU shop/{CHECKOUT_POD}: {root_cause}" in lines
    assert "1. first do this" in lines
    assert "2. then that" in lines


def test_crash_loop_reports_the_root_cause_from_the_pod_and_its_previous_log(
    platform: Platform, model: FakeModelServer, cluster: CannedHttp
) -> None:
    root_cause = "payments 3.1.0 exits at start: PAYMENTS_DB_URL is not set"
    model.answer(
        openai_reply(
            calls=[
                ("kubernetes", {"kind": "pods", "namespace": "shop", "name": PAYMENTS_POD}),
                ("logs", {"namespace": "shop", "pod": PAYMENTS_POD, "previous": True}),
            ]
        ),
        openai_reply(finding(root_cause, confidence=0.9, cites=["call_0", "call_1"])),
    )

    execution = investigated(platform, "KubePodCrashLooping", "crash-loop")

    assert execution["state"] == "succeeded", execution
    assert tools_offered(model) == {"kubernetes", "logs", "runbook"}
    goal = goal_asked(model)
    assert PAYMENTS_POD in goal
    assert "in namespace shop is crash-looping" in goal
    outputs = tool_outputs(model)
    assert "waiting CrashLoopBackOff: back-off 5m0s, last ended Error exit 2" in outputs
    assert "panic: PAYMENTS_DB_URL is not set" in outputs
    log_reads = [r for r in cluster.requests if f"/pods/{PAYMENTS_POD}/log?" in r]
    assert log_reads, cluster.requests
    # kubernetes-asyncio sends True; vigil test's reads (module-scoped server) send False
    assert any("previous=true" in read.lower() for read in log_reads), log_reads
    assert all(r.startswith("GET ") for r in cluster.requests)
    lines = notified(platform, root_cause)
    assert f"shop/{PAYMENTS_POD} crash-loops: {root_cause}" in lines
    assert "- then that" in lines
