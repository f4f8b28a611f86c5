"""One alert, one trace: `vigil up` with every service exporting OTLP/HTTP to a collector in
this process; an alert whose workflow runs a cli step, then notifies a webhook sink.

The alert's path crosses four services — ingest (the webhook's request), engine
(admission, each step's dispatch, each result), executor (the cli step's run) and sink (the
delivery and its HTTP request). The controller has no part in it (it publishes the
definitions before any alert arrives), so its spans are in no alert's trace.

All the alert's spans share one trace id (the one the execution document and the API
show), there is exactly one root (ingest's request span), and no span's parent is missing.
The test waits until the trace has no orphan left (parents end, and are exported, after
their children), never for a fixed time.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.collector import ReceivedSpan, TraceCollector, collecting
from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    write_definitions,
)
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ON_THE_PATH = {"vigil-ingest", "vigil-engine", "vigil-executor", "vigil-sink"}
TRACE_UI = "https://jaeger.example.com/trace/{trace_id}"
# Spans the alert's trace must hold, by (service, name).
EXPECTED = {
    ("vigil-ingest", "POST /hooks/{namespace}/{source}"),
    ("vigil-engine", "consume engine batch"),  # the alert, then each result
    ("vigil-engine", "admit alert"),
    ("vigil-engine", "dispatch cli"),
    ("vigil-executor", "consume executor-cli"),
    ("vigil-executor", "run cli"),
    ("vigil-engine", "dispatch notify"),
    ("vigil-sink", "consume sink-notify"),
    ("vigil-sink", "deliver webhook"),
    ("vigil-sink", "POST"),  # the webhook's HTTP request (httpx instrumented)
}


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
metadata: {name: traced, namespace: ops}
spec:
  trigger: {matchers: ['alertname="DiskFull"']}
  steps:
    - name: measure
      cli: {command: [echo, measured], timeout: 30s}
    - name: report
      notify: {sinks: [team], title: "{{ steps.measure.output.stdout }}"}
""",
    ]


@pytest.fixture(scope="module")
def collector() -> Iterator[TraceCollector]:
    with collecting() as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    collector: TraceCollector,
    receiver: WebhookReceiver,
) -> Iterator[Platform]:
    folder = write_definitions(tmp_path_factory.mktemp("definitions"), *definitions(receiver))
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between exports
        "VIGIL_TRACE_URL": TRACE_UI,
    }
    with running_platform(
        definitions=folder, data_dir=tmp_path_factory.mktemp("data"), env=env
    ) as running:
        yield running


def orphans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    ids = {s.span_id for s in spans}
    return [s for s in spans if s.parent_span_id and s.parent_span_id not in ids]


def complete(spans: list[ReceivedSpan]) -> bool:
    """Every expected span, none without its parent, and the engine's last batch (the
    notify step's result, handled after the webhook was posted) exported too."""
    batches = [s for s in spans if s.name == "consume engine batch"]
    return (
        {(s.service, s.name) for s in spans} >= EXPECTED
        and not orphans(spans)
        and len(batches) >= 3  # the alert and the two results
    )


def test_one_alert_is_one_connected_trace_across_the_four_services_on_its_path(
    platform: Platform, collector: TraceCollector, receiver: WebhookReceiver
) -> None:
    body = alertmanager_body([firing_alert("DiskFull", instance="db-1")])
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert answer.status_code == 200, answer.text

    execution = platform.newest_finished(workflow="traced")
    assert execution["state"] == "succeeded", execution
    receiver.wait_for(1, timeout=30)
    trace_id = execution["traceId"]
    assert trace_id, execution
    assert execution["traceUrl"] == TRACE_UI.replace("{trace_id}", trace_id)

    spans = collector.wait_for(trace_id, complete, timeout=60)

    present = {(s.service, s.name) for s in spans}
    assert present >= EXPECTED, f"missing {EXPECTED - present}; got {sorted(present)}"
    assert not orphans(spans), orphans(spans)
    assert {s.service for s in spans} == ON_THE_PATH
    # The alert and the two results each handled in the alert's trace.
    assert len([s for s in spans if s.name == "consume engine batch"]) == 3
    (root,) = [s for s in spans if not s.parent_span_id]
    assert (root.service, root.name) == ("vigil-ingest", "POST /hooks/{namespace}/{source}")
    # The webhook's URL (its path may be a credential) is in no span; its host is.
    (post_span,) = [s for s in spans if (s.service, s.name) == ("vigil-sink", "POST")]
    assert receiver.url.rsplit("/", 1)[0] in post_span.attributes.values(), post_span
    assert not [s for s in spans if any("/notifications" in v for v in s.attributes.values())]
    # The webhook's request carried the trace on to the receiver too.
    (post,) = receiver.posts
    assert post.headers["traceparent"].split("-")[1] == trace_id
    # Every service on the path wrote the trace id on its lines about this alert.
    lines = [line for line in platform.logs().splitlines() if trace_id in line]
    for event in ("step_started", "step_finished", "notify_finished", "execution_created"):
        assert any(event in line for line in lines), f"no {event} line with the trace id"
