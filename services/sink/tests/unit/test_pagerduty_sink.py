"""The `pagerduty` sink against a fake PagerDuty Events API v2 over real HTTP on loopback,
answering as the real API does: 202 with the dedup_key, 400 `invalid event` naming the
errors, 429 when told to. The routing key comes from a Secret through the fake resolver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http_fake import FakeHTTPServer, Received, Reply
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, NotifyStep, StepRequest, StepSummary
from vigil.common.testing import EPOCH, FakeClock, MemorySecrets, definitions_view, delivery
from vigil.common.testing import sqlite_store as opened_store
from vigil.sink.adapters.pagerduty import PagerDutyNotifier, dedup_key
from vigil.sink.delivering import DeliveryLoop, RetryPolicy
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks

ROUTING_KEY = "R0UT1NGKEY0000000000000000000001"
SEVERITIES = {"critical", "error", "warning", "info"}
NO_LINKS = ReportLinks()


def _problems(event: Any) -> list[str]:
    """What the real Events API v2 refuses, in its own words."""
    problems: list[str] = []
    if event.get("routing_key") != ROUTING_KEY:
        problems.append("Invalid routing key")
    if event.get("event_action") not in {"trigger", "acknowledge", "resolve"}:
        problems.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") or {}
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                problems.append(f"'payload.{name}' is missing or blank")
        if payload.get("severity") and payload["severity"] not in SEVERITIES:
            problems.append("'payload.severity' is invalid")
    elif not event.get("dedup_key"):
        problems.append("'dedup_key' is missing or blank")
    return problems


@dataclass(slots=True, kw_only=True)
class FakePagerDuty:
    busy: int = 0  # answer 429 to this many requests first
    events: list[Any] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # Idempotency-Key of each request
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer)

    @property
    def url(self) -> str:
        return self._server.url("/v2/enqueue")

    def _answer(self, request: Received) -> Reply:
        event = request.json()
        self.events.append(event)
        self.keys.append(request.headers.get("idempotency-key", ""))
        if self.busy > 0:
            self.busy -= 1
            return Reply.json(
                429, {"status": "throttle event", "message": "Requests are throttled"}
            )
        problems = _problems(event)
        if problems:
            return Reply.json(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": problems,
                },
            )
        key = event.get("dedup_key") or "generated"
        return Reply.json(
            202, {"status": "success", "message": "Event processed", "dedup_key": key}
        )

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def sink_yaml(url: str, *, key: str = ROUTING_KEY) -> str:
    return f"""
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: oncall, namespace: ops}}
spec:
  type: pagerduty
  pagerduty: {{routingKeySecretRef: {{name: pd, key: routing-key}}, url: "{url}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pd, namespace: ops}}
stringData: {{routing-key: "{key}"}}
"""


def notification(
    text: str,
    *,
    status: str = "firing",
    severity: str | None = "critical",
    workflow: str = "disk",
    title: str = "DiskFull on db-1",
) -> Notification:
    definition = definitions_view(text).sink("ops", "oncall")
    assert definition is not None
    labels = {"alertname": "DiskFull", "instance": "db-1:9100"}
    if severity is not None:
        labels["severity"] = severity
    request = StepRequest(
        execution_id="01EX",
        namespace="ops",
        workflow=workflow,
        step="report",
        attempt=1,
        idempotency_key="01EX/report/1",
        notify=NotifyStep(
            sinks=["oncall"],
            title=title,
            message="93% used",
            custom_title=True,
            custom_message=True,
            steps=[
                StepSummary(
                    name="check",
                    kind="cli",
                    state="succeeded",
                    started_at=EPOCH,
                    finished_at=EPOCH + timedelta(seconds=1.5),
                )
            ],
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            alert=Alert.model_validate(
                {
                    "status": status,
                    "fingerprint": "f1",
                    "labels": labels,
                    "startsAt": EPOCH.isoformat(),
                }
            ),
        ),
    )
    assert request.notify is not None
    return Notification(
        sink=definition,
        request=request,
        notify=request.notify,
        idempotency_key="01EX/report/1/oncall",
    )


async def test_a_firing_alert_triggers_with_a_dedup_key_and_a_link_to_the_execution(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    text = sink_yaml(pagerduty.url)
    notifier = PagerDutyNotifier(
        client,
        secrets=MemorySecrets.of(text),
        links=ReportLinks(
            public_url="http://vigil.example:8080/",
            trace_url="http://jaeger:16686/trace/{trace_id}",
        ),
    )

    await notifier.send(notification(text))

    (event,) = pagerduty.events
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "vigil/ops/disk/f1"
    assert event["payload"]["summary"] == "DiskFull on db-1: 93% used"
    assert event["payload"]["source"] == "db-1:9100"
    assert event["payload"]["severity"] == "critical"
    details = event["payload"]["custom_details"]
    assert details["message"] == "93% used"
    assert "check (cli): succeeded in 1.5s" in details["report"]
    assert event["links"] == [
        {"href": "http://vigil.example:8080/api/v1/executions/01EX", "text": "Vigil execution"},
        {
            "href": "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736",
            "text": "Vigil trace",
        },
    ]
    assert pagerduty.keys == ["01EX/report/1/oncall"]


async def test_a_resolved_alert_resolves_the_same_incident(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    text = sink_yaml(pagerduty.url)
    notifier = PagerDutyNotifier(client, secrets=MemorySecrets.of(text), links=NO_LINKS)

    await notifier.send(notification(text))
    await notifier.send(notification(text, status="resolved"))

    trigger, resolve = pagerduty.events
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert "payload" not in resolve
    assert "links" not in trigger, "no public URL, no link"


def test_two_workflows_on_one_alert_do_not_share_an_incident() -> None:
    text = sink_yaml("http://127.0.0.1:9/v2/enqueue")

    keys = {dedup_key(notification(text, workflow=w)) for w in ("disk", "disk-cleanup")}

    assert keys == {"vigil/ops/disk/f1", "vigil/ops/disk-cleanup/f1"}


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        ("critical", "critical"),
        ("warning", "warning"),
        ("info", "info"),
        ("page", "error"),
        (None, "error"),
    ],
)
async def test_the_severity_label_maps_onto_pagerduty_severities(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient, label: str | None, severity: str
) -> None:
    text = sink_yaml(pagerduty.url)

    await PagerDutyNotifier(client, secrets=MemorySecrets.of(text), links=NO_LINKS).send(
        notification(text, severity=label)
    )

    assert pagerduty.events[0]["payload"]["severity"] == severity


async def test_an_invalid_event_is_permanent_and_names_pagerdutys_errors(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    text = sink_yaml(pagerduty.url, key="not-the-key")

    with pytest.raises(PermanentError) as raised:
        await PagerDutyNotifier(client, secrets=MemorySecrets.of(text), links=NO_LINKS).send(
            notification(text)
        )

    assert str(raised.value) == "PagerDuty refused the event: Invalid routing key"
    assert "not-the-key" not in str(raised.value)


async def test_throttling_is_retried_by_the_delivery_loop_then_delivered(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pagerduty.busy = 2
    text = sink_yaml(pagerduty.url)
    clock = FakeClock()
    async with opened_store(tmp_path) as store:
        loop = DeliveryLoop(
            store=store,
            notifiers={
                "pagerduty": PagerDutyNotifier(
                    client, secrets=MemorySecrets.of(text), links=NO_LINKS
                )
            },
            policy=RetryPolicy(attempts=3, backoff=1.0, jitter=0.0),
            clock=clock,
        )

        assert await loop.deliver(notification(text), delivery(1)) is None

        records = await store.deliveries(idempotency_key="01EX/report/1/oncall")
    assert [(r.status, r.detail) for r in records] == [
        ("retrying", "PagerDuty answered 429"),
        ("retrying", "PagerDuty answered 429"),
        ("delivered", None),
    ]
    assert clock.slept == [1.0, 2.0], "no Retry-After from PagerDuty: the backoff"
    assert set(pagerduty.keys) == {"01EX/report/1/oncall"}


async def test_an_unreachable_pagerduty_is_transient(client: httpx.AsyncClient) -> None:
    from tests.support.nats import free_port

    text = sink_yaml(f"http://127.0.0.1:{free_port()}/v2/enqueue")

    with pytest.raises(TransientError, match="PagerDuty: ConnectError"):
        await PagerDutyNotifier(client, secrets=MemorySecrets.of(text), links=NO_LINKS).send(
            notification(text)
        )


async def test_a_missing_routing_key_secret_is_transient_and_sends_nothing(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    text = sink_yaml(pagerduty.url)
    secrets = MemorySecrets.of(text)
    secrets.remove("ops", "pd")

    with pytest.raises(TransientError, match="Secret ops/pd is not defined"):
        await PagerDutyNotifier(client, secrets=secrets, links=NO_LINKS).send(notification(text))

    assert pagerduty.events == []
