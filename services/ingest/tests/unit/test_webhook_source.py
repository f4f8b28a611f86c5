"""The `webhook` source type through the SourceAdapter port: a corpus of real-world bodies
(`webhook_corpus/`: Grafana's webhook contact point, a GitHub `workflow_run` event, a
Datadog webhook, a PagerDuty V3 webhook) read into the alerts they stand for, and bodies the
mapping cannot read refused with a message naming the field and the item."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vigil.common.alertmanager import label_fingerprint
from vigil.common.definitions import Definition
from vigil.common.errors import InvalidInput
from vigil.common.testing import EPOCH, FakeClock, definitions_view, validated
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.adapters.webhook import WebhookSource

CORPUS = Path(__file__).parent / "webhook_corpus"
EXAMPLES = Path(__file__).parents[4] / "examples" / "sources"

DATADOG = """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: datadog, namespace: ops}
spec:
  type: webhook
  webhook:
    labels:
      alertname: '"DatadogMonitor"'
      monitor: body.alert_id
      host: body.hostname
      priority: body.alert_priority
    annotations:
      summary: body.title
      url: body.link
    status: 'body.alert_transition == "Recovered" ? "resolved" : "firing"'
    fingerprint: body.alert_id + "/" + body.alert_scope
    startsAt: int(body.date) / 1000
"""
PAGERDUTY = """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: pagerduty, namespace: ops}
spec:
  type: webhook
  webhook:
    labels:
      alertname: '"PagerDutyIncident"'
      service: body.event.data.service.summary
      urgency: body.event.data.urgency
    annotations: {summary: body.event.data.title, url: body.event.data.html_url}
    status: 'body.event.event_type == "incident.resolved" ? "resolved" : "firing"'
    fingerprint: body.event.data.id
    startsAt: body.event.occurred_at
"""


def corpus(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def source(yaml_text: str, namespace: str, name: str) -> Definition:
    found = definitions_view(yaml_text).source_definition(namespace, name)
    assert found is not None
    return found


def mapped(mapping: str, *, items: str | None = None, extra: str = "") -> Definition:
    """A webhook Source in ops named `hook` with `labels: {…}` written as `mapping`."""
    items_line = f"\n    items: {items}" if items else ""
    return source(
        f"""
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {{name: hook, namespace: ops}}
spec:
  type: webhook
  webhook:{items_line}
    labels: {mapping}{extra}
""",
        "ops",
        "hook",
    )


WEBHOOK = WebhookSource(clock=FakeClock())


def test_grafana_webhook_contact_point_bodies_become_one_alert_per_item() -> None:
    grafana = source((EXAMPLES / "grafana-webhook.yaml").read_text(), "monitoring", "grafana")

    batch = WEBHOOK.read(corpus("grafana.json"), source=grafana)

    first, second = batch.alerts
    assert first.status == "firing"
    assert first.fingerprint == "6a3d0e2b1c9f4e57"
    assert first.labels == {
        "alertname": "HighCPU",
        "grafana_folder": "Infra",
        "instance": "web-1:9100",
        "severity": "warning",
    }
    assert first.annotations == {
        "summary": "CPU above 90% for 5m on web-1",
        "dashboard": "https://grafana.example/d/node?orgId=1",
        "values": "[ var='B' labels={instance=web-1:9100} value=93.5 ]",
    }
    assert first.starts_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert (second.status, second.fingerprint) == ("resolved", "0b7c2f1a8e3d9c44")
    assert second.labels["instance"] == "web-2:9100"


def test_a_failed_github_workflow_run_fires_and_a_successful_one_resolves_it() -> None:
    github = source((EXAMPLES / "github-events.yaml").read_text(), "ci", "github")
    failed = corpus("github-workflow-run.json")

    (alert,) = WEBHOOK.read(failed, source=github).alerts

    assert alert.status == "firing"
    assert alert.labels == {
        "alertname": "GitHubWorkflowFailed",
        "repository": "acme/shop",
        "workflow": "CI",
        "branch": "main",
        "severity": "critical",
    }
    assert alert.annotations["summary"] == (
        "CI failure on main (9f1c2d3e4b5a69788796a5b4c3d2e1f009182736)"
    )
    assert alert.annotations["url"] == "https://github.com/acme/shop/actions/runs/7311998271"
    assert alert.fingerprint == label_fingerprint(alert.labels)  # the default identity
    assert alert.starts_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    succeeded = copy.deepcopy(failed)
    succeeded["workflow_run"]["conclusion"] = "success"
    (resolved,) = WEBHOOK.read(succeeded, source=github).alerts
    assert resolved.status == "resolved"
    assert resolved.fingerprint == alert.fingerprint


def test_a_datadog_webhook_reads_its_ids_and_unix_milliseconds() -> None:
    (alert,) = WEBHOOK.read(corpus("datadog.json"), source=source(DATADOG, "ops", "datadog")).alerts

    assert alert.labels == {
        "alertname": "DatadogMonitor",
        "monitor": "98765432",
        "host": "db-3",
        "priority": "P2",
    }
    assert alert.annotations["summary"] == "[Triggered] Disk usage high on db-3"
    assert (alert.status, alert.fingerprint) == ("firing", "98765432/host:db-3")
    assert alert.starts_at == datetime.fromtimestamp(1764000000, tz=UTC)


def test_a_pagerduty_v3_webhook_reads_the_incident() -> None:
    body = corpus("pagerduty-v3.json")

    (alert,) = WEBHOOK.read(body, source=source(PAGERDUTY, "ops", "pagerduty")).alerts

    assert alert.labels == {
        "alertname": "PagerDutyIncident",
        "service": "API Service",
        "urgency": "high",
    }
    assert (alert.status, alert.fingerprint) == ("firing", "PGR0VU2")
    assert alert.starts_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_without_starts_at_an_alert_starts_when_the_body_was_received() -> None:
    (alert,) = WEBHOOK.read({"name": "x"}, source=mapped("{alertname: body.name}")).alerts

    assert (alert.starts_at, alert.status) == (EPOCH, "firing")
    assert alert.labels == {"alertname": "x"}


def test_the_alertmanager_source_reads_grafana_alerting_bodies_with_their_extra_fields() -> None:
    am = source(
        "apiVersion: vigil.dev/v1alpha1\nkind: Source\nmetadata: {name: am, namespace: ops}\n"
        "spec: {type: alertmanager}\n",
        "ops",
        "am",
    )

    batch = AlertmanagerSource().read(corpus("grafana.json"), source=am)

    assert [a.fingerprint for a in batch.alerts] == ["6a3d0e2b1c9f4e57", "0b7c2f1a8e3d9c44"]
    assert batch.alerts[0].generator_url.startswith("https://grafana.example/alerting/")
    assert batch.group.external_url == "https://grafana.example/"
    assert batch.group.common_labels["grafana_folder"] == "Infra"


GRAFANA_ITEMS = "body.alerts"


@pytest.mark.parametrize(
    ("definition", "body", "message"),
    [
        (
            mapped("{severity: item.labels.severity}", items=GRAFANA_ITEMS),
            {"alerts": [{"labels": {"severity": "page"}}, {"labels": {}}]},
            "items[1].labels.severity: no such key 'severity'",
        ),
        (
            mapped("{alertname: body.rule}"),
            {"rule": 5},
            "labels.alertname: must yield a string, got int 5; convert with string()",
        ),
        (
            mapped("{alertname: item.name}", items=GRAFANA_ITEMS),
            {"alerts": {"name": "not a list"}},
            "items: must yield a list, got dict",
        ),
        (
            mapped("{alertname: item.name}", items=GRAFANA_ITEMS),
            {"alerts": [{"name": str(n)} for n in range(4)]},
            "items: 4 items, over the limit of 3 alerts per body",
        ),
        (
            mapped("{alertname: body.name}", extra="\n    status: body.state"),
            {"name": "x", "state": "ok"},
            'status: must yield "firing" or "resolved", got str \'ok\'',
        ),
        (
            mapped("{alertname: body.name}", extra="\n    startsAt: body.at"),
            {"name": "x", "at": "yesterday"},
            "startsAt: str 'yesterday' is not an RFC 3339 time",
        ),
        (
            mapped("{alertname: body.name}", extra="\n    startsAt: body.at"),
            {"name": "x", "at": "2026-11-24T09:00:00"},
            "startsAt: str '2026-11-24T09:00:00' has no UTC offset",
        ),
        (
            mapped("{alertname: body.name}", extra="\n    fingerprint: body.id"),
            {"name": "x", "id": ""},
            "fingerprint: must not be empty",
        ),
        (
            mapped("{alertname: item.n}", items=GRAFANA_ITEMS, extra="\n    labelsFrom: item.l"),
            {"alerts": [{"n": "x", "l": {"team": 7}}]},
            "items[0].labelsFrom.team: must yield a string, got int 7",
        ),
    ],
)
def test_a_body_the_mapping_cannot_read_is_refused_naming_the_field(
    definition: Definition, body: object, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        WebhookSource(max_alerts=3, clock=FakeClock()).read(body, source=definition)

    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("webhook", "problem"),
    [
        (
            "{labels: {alertname: 'body.name +'}}",
            "spec.webhook.labels.alertname: CEL 'body.name +' does not compile",
        ),
        (
            "{items: body.alerts, labels: {alertname: body.name}}",
            "spec.webhook.labels.alertname: CEL 'body.name' uses unknown name(s) body;"
            " available: item (with `items` set",
        ),
        (
            "{items: item.alerts, labelsFrom: item.labels}",
            "spec.webhook.items: CEL 'item.alerts' uses unknown name(s) item; available: body",
        ),
        ("{status: body.state}", "webhook mapping needs `labels` or `labelsFrom`"),
    ],
)
def test_validation_compiles_the_mapping_and_names_the_field(webhook: str, problem: str) -> None:
    yaml_text = (
        "apiVersion: vigil.dev/v1alpha1\nkind: Source\nmetadata: {name: hook, namespace: ops}\n"
        f"spec: {{type: webhook, webhook: {webhook}}}\n"
    )

    with pytest.raises(InvalidInput) as caught:
        validated(yaml_text)

    assert problem in str(caught.value)


def test_validation_names_an_undefined_signing_secret() -> None:
    yaml_text = (
        "apiVersion: vigil.dev/v1alpha1\nkind: Source\nmetadata: {name: hook, namespace: ops}\n"
        "spec:\n  type: alertmanager\n  auth:\n    hmac:\n"
        "      secretRef: {name: nowhere, key: secret}\n      header: X-Signature\n"
    )

    with pytest.raises(InvalidInput) as caught:
        validated(yaml_text)

    assert "spec.auth.hmac.secretRef: Secret ops/nowhere is not defined" in str(caught.value)
