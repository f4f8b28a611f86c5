"""The Grafana dashboard's queries against a real Prometheus scraping a running `vigil up`.

Prometheus (Debian's package) scrapes every service's `/metrics` each second, at the URLs
`vigil up` logs (`service_metrics`), ingest's with the API token. Once every target is up,
one alert runs a workflow with a cli step, an agent step (a fake OpenAI-compatible model
server) and a webhook notification; then every PromQL expression of
`deploy/grafana/vigil-dashboard.json` must parse and return data (at least one finite
sample), with Grafana's `$__rate_interval` read as `1m`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    write_definitions,
)
from tests.support.llm import FakeModelServer, openai_reply, serving
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform
from tests.support.prometheus import (
    Prometheus,
    ScrapeTarget,
    prometheus_binary,
    running_prometheus,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "vigil-dashboard.json"
SERVICES = {"controller", "engine", "executor", "sink", "ingest"}
WAIT_SECONDS = 30.0
FINDING = {
    "summary": "the disk holds old logs",
    "rootCause": "log rotation stopped",
    "evidence": [],
    "recommendations": ["rotate the logs"],
    "confidence": 0.6,
}


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"].replace("$__rate_interval", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metrics_urls(platform: Platform) -> dict[str, str]:
    """Each service's metrics URL, as `vigil up` logs it once all are ready (the API may
    answer a moment before)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        urls: dict[str, str] = {}
        for line in platform.logs().splitlines():
            if "service_metrics" in line:
                service = re.search(r"\bservice=(\w+)", line)
                url = re.search(r"\burl=(\S+)", line)
                assert service is not None, line
                assert url is not None, line
                urls[service.group(1)] = url.group(1)
        if set(urls) == SERVICES or time.monotonic() > deadline:
            return urls
        time.sleep(0.1)


def definitions(receiver: WebhookReceiver) -> list[str]:
    return [
        alertmanager_source("ops"),
        f"""\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: team, namespace: ops}}
spec:
  type: webhook
  webhook: {{url: "{receiver.url}", timeout: 5s}}
""",
        """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: watched, namespace: ops}
spec:
  trigger: {matchers: ['alertname="DiskFull"']}
  steps:
    - name: measure
      cli: {command: [echo, measured], timeout: 30s}
    - name: investigate
      agent: {goal: "Why is {{ alert.labels.instance }} full?", tools: [dns], maxIterations: 2}
      timeout: 60s
    - name: report
      notify: {sinks: [team], title: "{{ steps.investigate.output.summary }}"}
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
        server.answer(openai_reply(json.dumps(FINDING), tokens=(120, 30)))
        yield server


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver, model: FakeModelServer
) -> Iterator[Platform]:
    prometheus_binary()  # skip before starting anything when there is no Prometheus
    folder = write_definitions(tmp_path_factory.mktemp("definitions"), *definitions(receiver))
    env = {
        "VIGIL_EXECUTOR_AGENT_BASE_URL": f"{model.base_url}/v1",
        "VIGIL_EXECUTOR_AGENT_API_KEY": "test-key",
    }
    with running_platform(
        definitions=folder, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, platform: Platform
) -> Iterator[Prometheus]:
    urls = metrics_urls(platform)
    assert set(urls) == SERVICES, platform.logs()[-3000:]
    targets = [
        ScrapeTarget(
            job=f"vigil-{name}",
            url=url,
            bearer_token=platform.token if name == "ingest" else None,
        )
        for name, url in sorted(urls.items())
    ]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as running:
        yield running


def finite(samples: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in samples)


def test_every_dashboard_query_parses_and_returns_data_after_one_alert(
    platform: Platform, prometheus: Prometheus, receiver: WebhookReceiver
) -> None:
    # Every service scraped once before the alert, so what it counts is an increase.
    deadline = time.monotonic() + WAIT_SECONDS
    while len(prometheus.samples("up == 1")) < len(SERVICES):
        assert time.monotonic() < deadline, (prometheus.samples("up"), prometheus.logs()[-2000:])
        time.sleep(0.2)

    body = alertmanager_body([firing_alert("DiskFull", instance="db-1")])
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    execution = platform.newest_finished(workflow="watched")
    assert execution["state"] == "succeeded", execution
    receiver.wait_for(1, timeout=30)

    expressions = dashboard_expressions()
    assert len(expressions) >= 6
    for expr in expressions:  # a parse error is a 400 at once, whatever was scraped
        parsed = prometheus.query(expr)
        assert parsed.status_code == 200, f"{expr} does not parse: {parsed.text}"
    missing = list(expressions)
    deadline = time.monotonic() + WAIT_SECONDS
    while missing and time.monotonic() < deadline:
        missing = [expr for expr in missing if not finite(prometheus.samples(expr))]
        if missing:
            time.sleep(0.5)  # the next scrape is at most a second away
    assert not missing, f"no data for {missing}"
    tokens = prometheus.samples('sum(vigil_agent_tokens_total{direction="input"})')
    assert float(tokens[0]["value"][1]) == 120
