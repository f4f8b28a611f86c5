"""`vigil up` with a `pagerduty` Sink: a firing alert reaches the (fake) Events API as a
`trigger`, its resolution as a `resolve` with the same dedup_key, each attempt is in
`/api/v1/executions/{id}/deliveries`, and the routing key appears in no API answer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    write_definitions,
)
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

ROUTING_KEY = "R0UT1NGKEY00000000000000000000e2e"
WAIT = 90.0


@pytest.fixture(scope="module")
def pagerduty() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port(), status=202)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, pagerduty: WebhookReceiver
) -> Iterator[Platform]:
    sink = f"""\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: pager, namespace: ops}}
spec:
  type: pagerduty
  pagerduty: {{routingKeySecretRef: {{name: pd, key: routing-key}}, url: "{pagerduty.url}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pd, namespace: ops}}
stringData: {{routing-key: "{ROUTING_KEY}"}}
"""
    flow = """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: page, namespace: ops}
spec:
  trigger: {matchers: ['alertname="DiskFull"'], on: [firing, resolved]}
  steps:
    - name: page
      notify:
        sinks: [pager]
        title: "{{ alert.labels.alertname }} on {{ alert.labels.instance }}"
        message: look
"""
    definitions = write_definitions(
        tmp_path_factory.mktemp("definitions"), alertmanager_source("ops"), sink, flow
    )
    env = {"VIGIL_SINK_PUBLIC_URL": "http://vigil.example"}
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


def test_firing_then_resolved_triggers_then_resolves_one_incident(
    platform: Platform, pagerduty: WebhookReceiver
) -> None:
    alert = firing_alert("DiskFull", instance="db-1", severity="warning")
    for status in ("firing", "resolved"):
        body = alertmanager_body([dict(alert, status=status)], status=status)
        answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        pagerduty.wait_for(1 if status == "firing" else 2, timeout=WAIT)

    trigger, resolve = (post.body for post in pagerduty.posts)
    assert trigger["event_action"] == "trigger"
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["summary"] == "DiskFull on db-1: look"
    assert "Workflow: ops/page" in trigger["payload"]["custom_details"]["report"]
    assert trigger["payload"]["severity"] == "warning"
    assert trigger["links"][0]["href"].startswith("http://vigil.example/api/v1/executions/")
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert trigger["dedup_key"].startswith("vigil/ops/page/")

    execution_id = trigger["links"][0]["href"].rsplit("/", 1)[1]
    answer = platform.api.get(f"/api/v1/executions/{execution_id}/deliveries", timeout=5)
    (record,) = answer.json()["items"]
    assert (record["sink"], record["sinkType"], record["status"], record["attempt"]) == (
        "pager",
        "pagerduty",
        "delivered",
        1,
    )
    assert ROUTING_KEY not in answer.text
    assert ROUTING_KEY not in platform.api.get("/api/v1/definitions", timeout=5).text
