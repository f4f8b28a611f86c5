"""The quickstart, end to end, as a user runs it: `vigil up`, then an Alertmanager POST.

Everything is asserted from the outside: what the webhook receiver got, what the API shows,
and what the HTTP answers say. The definitions are the real `examples/quickstart`, copied
so the webhook sink's Secret can point at this test's receiver.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.mongo import with_database
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SETTLE_SECONDS = 60.0


@pytest.fixture(scope="module")
def receiver(store_args: list[str]) -> Iterator[WebhookReceiver]:
    """One receiver per platform (per store), so each run sees only its own posts."""
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "mongodb"])
def store_args(request: pytest.FixtureRequest) -> list[str]:
    """The whole module runs on the embedded SQLite store and on MongoDB (mongoeco, or
    VIGIL_TEST_MONGODB_URL), through `vigil up --store`."""
    if request.param == "sqlite":
        return []
    base: str = request.getfixturevalue("mongodb_url")
    return ["--store", with_database(base, f"vigil_e2e_{uuid.uuid4().hex[:8]}")]


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver, store_args: list[str]
) -> Iterator[Platform]:
    definitions = tmp_path_factory.mktemp("definitions")
    for file in QUICKSTART.glob("*.yaml"):
        text = file.read_text()
        shutil.copy(file, definitions / file.name)
        (definitions / file.name).write_text(
            text.replace("http://127.0.0.1:9095/notifications", receiver.url)
        )
    assert receiver.url in (definitions / "sinks.yaml").read_text()
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data"), extra_args=store_args
    ) as running:
        yield running


def payload() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((QUICKSTART / "alerts.json").read_text())
    return document


def executions(platform: Platform, **params: str) -> list[dict[str, Any]]:
    answer = platform.api.get("/api/v1/executions", params=params, timeout=5)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def wait_until_finished(platform: Platform, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        found = executions(platform)
        if len(found) >= count and all(e["state"] not in ("pending", "running") for e in found):
            return found
        time.sleep(0.1)
    msg = f"executions did not finish: {executions(platform)}\n{platform.logs()[-5000:]}"
    raise AssertionError(msg)


def step(execution: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in execution["steps"] if s["name"] == name)
    return found


def test_alertmanager_payload_runs_the_workflow_and_notifies(
    platform: Platform, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two matching alerts run the workflow to success and reach the webhook; one does not."""
    sent = time.monotonic()
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=payload(), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "new": 3}

    posts = receiver.wait_for(2, timeout=SETTLE_SECONDS)
    first_notification = min(p.at for p in posts) - sent
    with capsys.disabled():
        sys.stderr.write(
            f"\n[e2e] POST to first webhook post: {first_notification * 1000:.0f} ms\n"
        )

    titles = sorted(p.body["title"] for p in posts)
    assert titles == [
        "HostDiskFillingUp on db-1:9100 (warning)",
        "HostDiskFillingUp on db-2:9100 (critical)",
    ]
    for post in posts:
        assert "Filesystem" in post.body["message"]  # df's output, rendered from the cli step
        assert post.body["alert"]["labels"]["alertname"] == "HostDiskFillingUp"
        assert post.headers["idempotency-key"] == post.body["idempotencyKey"]
        assert post.headers["idempotency-key"].endswith("/report/1/team-webhook")

    finished = wait_until_finished(platform, 2)
    assert len(finished) == 2
    by_instance = {e["alert"]["labels"]["instance"]: e for e in finished}
    assert set(by_instance) == {"db-1:9100", "db-2:9100"}  # db-3 (severity=info) did not match
    for instance, listed in by_instance.items():
        detail = platform.api.get(f"/api/v1/executions/{listed['id']}", timeout=5).json()
        assert detail["state"] == "succeeded", detail
        measure = step(detail, "measure")
        assert measure["state"] == "succeeded"
        assert measure["output"]["exitCode"] == 0
        assert "Filesystem" in measure["output"]["stdout"]
        critical = instance == "db-2:9100"
        assert step(detail, "critical")["output"] == {"result": critical}
        assert step(detail, "escalate")["state"] == ("succeeded" if critical else "skipped")
        assert step(detail, "tell")["state"] == "skipped"  # onFailure: nothing failed
        deliveries = step(detail, "report")["output"]["deliveries"]
        assert {d["sink"]: d["status"] for d in deliveries} == {
            "console": "delivered",
            "team-webhook": "delivered",
        }


def test_resending_the_same_payload_starts_nothing_new(
    platform: Platform, receiver: WebhookReceiver
) -> None:
    """Alertmanager re-sends groups; the same occurrences must not run again."""
    before = wait_until_finished(platform, 2)
    posts_before = len(receiver.posts)
    resent = payload()
    resent["receiver"] = "vigil-ha-peer"  # an HA peer's copy: same alerts, other envelope
    for _ in range(2):
        answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=resent, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 3, "new": 0}
    time.sleep(1.5)  # give a wrongly started execution time to show up
    assert [e["id"] for e in executions(platform)] == [e["id"] for e in before]
    assert len(receiver.posts) == posts_before


def test_a_new_occurrence_of_the_same_alert_starts_a_new_execution(platform: Platform) -> None:
    """Same fingerprint, new startsAt (it fired again): that is a new occurrence."""
    wait_until_finished(platform, 2)
    again = payload()
    again["alerts"] = [dict(again["alerts"][0], startsAt="2026-11-24T10:00:00Z")]
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=again, timeout=10)
    assert answer.json() == {"accepted": 1, "new": 1}
    finished = wait_until_finished(platform, 3)
    assert len(finished) == 3
    assert finished[0]["alert"]["startsAt"] == "2026-11-24T10:00:00Z"


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"version": "4", "status": "firing", "alerts": []}', 422, "alerts"),
        (b'{"status": "firing", "alerts": [{"status": "firing"}]}', 422, "alerts[0].labels"),
        (b'{"status": "burning", "alerts": []}', 422, "status"),
        (b"[]", 422, "Alertmanager webhook payload"),
    ],
)
def test_malformed_bodies_get_a_4xx_that_names_the_problem_and_change_nothing(
    platform: Platform, body: bytes, status: int, mentions: str
) -> None:
    before = executions(platform)
    answer = httpx.post(
        f"{platform.url}/hooks/demo/alertmanager",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == status, answer.text
    assert mentions in answer.json()["error"]
    assert executions(platform) == before


def test_unknown_source_is_404(platform: Platform) -> None:
    answer = httpx.post(f"{platform.url}/hooks/demo/nosuchsource", json=payload(), timeout=10)
    assert answer.status_code == 404
    assert "demo/nosuchsource" in answer.json()["error"]


def test_operations_endpoints_and_definitions(platform: Platform) -> None:
    assert httpx.get(f"{platform.url}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{platform.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {"nats", "store", "definitions"}
    assert httpx.get(f"{platform.url}/metrics", timeout=5).status_code == 401  # beside the API
    metrics = platform.api.get("/metrics", timeout=5).text
    assert "vigil_alerts_received_total" in metrics
    assert 'vigil_ingest_rejected_total{reason="unknown_source"}' in metrics
    definitions = platform.api.get("/api/v1/definitions", timeout=5).json()["items"]
    assert {(d["kind"], d["name"], d["ready"]) for d in definitions} == {
        ("Source", "alertmanager", True),
        ("Workflow", "disk-filling-up", True),
        ("Sink", "console", True),
        ("Sink", "team-webhook", True),
    }
    filtered = executions(platform, workflow="disk-filling-up", state="succeeded", limit="1")
    assert len(filtered) == 1


def test_alert_history_follows_firing_and_resolved(platform: Platform) -> None:
    """Each alert has one history document; resolved moves it to resolved, no execution."""
    wait_until_finished(platform, 2)
    started = {e["id"] for e in executions(platform)}
    resolved = payload()
    resolved["status"] = "resolved"
    resolved["alerts"] = [
        dict(resolved["alerts"][2], status="resolved", endsAt="2026-11-24T09:30:00Z")
    ]
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=resolved, timeout=10)
    assert answer.json() == {"accepted": 1, "new": 1}

    alert_id = "demo/alertmanager/3c4d5e6f708192a3"
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        detail = platform.api.get(f"/api/v1/alerts/{alert_id}", timeout=5).json()
        if detail.get("status") == "resolved":
            break
        time.sleep(0.1)
    assert detail["status"] == "resolved", detail
    assert [h["status"] for h in detail["history"]] == ["firing", "resolved"]
    assert detail["occurrences"] == 2
    assert detail["executions"] == []  # severity=info never matched the workflow
    assert {e["id"] for e in executions(platform)} == started  # `on: [firing]` only

    listed = platform.api.get(
        "/api/v1/alerts",
        params=[("namespace", "demo"), ("match", 'severity=~"crit.*"')],
        timeout=5,
    ).json()["items"]
    assert [a["labels"]["instance"] for a in listed] == ["db-2:9100"]
    critical = platform.api.get(f"/api/v1/alerts/{listed[0]['id']}", timeout=5).json()
    assert len(critical["executions"]) >= 1
    assert all(e["workflow"] == "disk-filling-up" for e in critical["executions"])
    assert (
        platform.api.get("/api/v1/alerts", params={"status": "resolved"}, timeout=5).json()[
            "items"
        ][0]["id"]
        == alert_id
    )
    bad = platform.api.get("/api/v1/alerts", params={"match": "sev~~x"}, timeout=5)
    assert bad.status_code == 400
    assert "sev~~x" in bad.json()["error"]


def test_every_delivery_attempt_is_recorded(platform: Platform) -> None:
    execution = wait_until_finished(platform, 2)[-1]
    items = platform.api.get(f"/api/v1/executions/{execution['id']}/deliveries", timeout=5).json()[
        "items"
    ]
    delivered = {(d["sink"], d["step"]) for d in items if d["status"] == "delivered"}
    assert ("console", "report") in delivered
    assert ("team-webhook", "report") in delivered


def test_a_killed_service_is_restarted_and_work_continues(platform: Platform) -> None:
    """SIGKILL the engine and the executor: `vigil up` restarts them, alerts still run."""
    before = len(wait_until_finished(platform, 0))
    for service in ("engine", "executor"):
        pids = platform.service_pids(service)
        assert len(pids) == 1, f"{service}: {pids}"
        os.kill(pids[0], signal.SIGKILL)
    again = payload()
    again["alerts"] = [dict(again["alerts"][1], startsAt="2026-11-24T11:00:00Z")]
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=again, timeout=10)
    assert answer.json() == {"accepted": 1, "new": 1}  # ingest was not touched
    finished = wait_until_finished(platform, before + 1)
    assert finished[0]["state"] == "succeeded"
    assert finished[0]["alert"]["startsAt"] == "2026-11-24T11:00:00Z"
    for service in ("engine", "executor"):
        assert len(platform.service_pids(service)) == 1
    assert platform.logs().count("service_exited") == 2


def test_sigterm_stops_every_process_within_seconds(platform: Platform) -> None:
    """Runs last in this module: Ctrl-C/SIGTERM stops nats-server and all five services."""
    code = platform.stop(timeout=30)
    assert code == 0, platform.logs()[-3000:]
    assert platform.stopped_in is not None
    assert platform.stopped_in < 15
    logs = platform.logs()
    assert "vigil_stopped" in logs
    assert "service_killed" not in logs  # everyone stopped on SIGTERM, none needed SIGKILL
