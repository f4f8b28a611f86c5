"""Webhooks in (`Ingest.receive`) and the operate API, through the real ASGI app with the
shipped fakes: what a sender gets back (status, message, `Retry-After`) and what was
published. Nothing is published for a request that is answered 4xx."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from tests.support.definitions import alertmanager_body, alertmanager_source, firing_alert
from tests.support.documents import make_execution, make_occurrence
from vigil.common.bus import ConsumerStats
from vigil.common.definitions import DefinitionStatus, DefinitionsView, status_key
from vigil.common.messages import AlertReceived, CancelRequested, RunRequested
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import FixedTokens, TokenTable
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest

DEFINITIONS = (
    alertmanager_source("ops")
    + """---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: locked, namespace: ops}
spec:
  type: alertmanager
  auth: {basicAuthSecretRef: {name: creds, usernameKey: user, passwordKey: password}}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ops}
stringData: {user: am, password: s3cret}
---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: guarded, namespace: ops}
spec:
  type: alertmanager
  auth: {bearerTokenSecretRef: {name: ingest-token, key: token}}
---
apiVersion: v1
kind: Secret
metadata: {name: ingest-token, namespace: ops}
stringData: {token: first-token}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: disk, namespace: ops}
spec:
  steps:
    - name: measure
      cli: {command: ["df"]}
"""
)
MAX_BODY = 64 * 1024
OPERATOR_TOKEN = "operator-token-0123456789"


def payload(*fingerprints: str, status: str = "firing") -> dict[str, Any]:
    return alertmanager_body(
        [
            {**firing_alert("DiskFull", status=status, instance=fp), "fingerprint": fp}
            for fp in fingerprints
        ],
        status=status,
        groupKey='{}:{alertname="DiskFull"}',
        receiver="vigil",
        groupLabels={"alertname": "DiskFull"},
        externalURL="http://alertmanager:9093",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    http: httpx.AsyncClient
    bus: RecordingPublisher
    store: Store
    secrets: MemorySecrets


@contextlib.asynccontextmanager
async def serving(
    folder: Path, *, definitions: DefinitionsView | None = None, trace_url: str | None = None
) -> AsyncIterator[Edge]:
    async with sqlite_store(folder) as store:
        bus = RecordingPublisher()
        secrets = MemorySecrets.of(DEFINITIONS)  # the Secrets as file mode would read them
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions or definitions_view(DEFINITIONS),
            sources={"alertmanager": AlertmanagerSource()},
            secrets=secrets,
            max_body_bytes=MAX_BODY,
            clock=FakeClock(),
            trace_url=trace_url,
        )
        app = build_app(ingest, checks={}, tokens=FixedTokens(TokenTable.of(OPERATOR_TOKEN)))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        ) as http:
            yield Edge(http=http, bus=bus, store=store, secrets=secrets)


async def test_an_accepted_body_is_answered_after_every_alert_is_published(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        response = await edge.http.post("/hooks/ops/am", json=payload("a", "b"))

        assert response.status_code == 200
        assert response.json() == {"accepted": 2, "new": 2}
        assert edge.bus.subjects() == ["vigil.alerts.ops.am"] * 2
        first, _ = edge.bus.messages(AlertReceived)
        assert first.group.key == '{}:{alertname="DiskFull"}'
        assert first.group.external_url == "http://alertmanager:9093"
        assert edge.bus.published[0].msg_id == "ops/am/a/firing/2026-11-24T09:00:00+00:00"


async def test_a_resent_body_is_accepted_again_and_counted_as_nothing_new(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        await edge.http.post("/hooks/ops/am", json=payload("a"))
        response = await edge.http.post("/hooks/ops/am", json=payload("a"))

        assert response.json() == {"accepted": 1, "new": 0}


async def test_a_body_that_could_not_be_stored_is_a_503_to_retry(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        edge.bus.fail_next()

        response = await edge.http.post("/hooks/ops/am", json=payload("a"))

        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "could not be stored durably" in response.json()["error"]
        assert edge.bus.published == []


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/hooks/ops/nope", payload("a"), 404, "no Source ops/nope is defined"),
        ("/hooks/ops/am", b"{not json", 400, "body is not valid JSON"),
        ("/hooks/ops/am", {"alerts": "x"}, 422, "not an Alertmanager webhook payload"),
        ("/hooks/ops/am", b"x" * (MAX_BODY + 1), 413, f"larger than {MAX_BODY} bytes"),
        ("/hooks/ops/locked", payload("a"), 401, "ops/locked requires valid credentials"),
    ],
)
async def test_a_bad_request_is_a_4xx_naming_the_problem_and_nothing_is_published(
    tmp_path: Path, path: str, body: dict[str, Any] | bytes, status: int, message: str
) -> None:
    async with serving(tmp_path) as edge:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()

        response = await edge.http.post(
            path, content=content, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == status
        assert message in response.json()["error"]
        assert edge.bus.published == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"{}", "text/plain", 415, "body must be application/json, not text/plain"),
        (b"{}", "", 415, "body must be application/json, not untyped"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "nested too deeply"),
        (b'{"alerts": [{"labels": {"x": "\\ud800"}}]}', "application/json", 400, "surrogate"),
        # The same lone surrogate as raw UTF-8 bytes, and escaped in a UTF-16 body.
        (b'{"alerts": [{"labels": {"x": "\xed\xa0\x80"}}]}', "application/json", 400, "surrogate"),
        ('{"a": "\\ud800"}'.encode("utf-16"), "application/json", 400, "surrogate"),
    ],
)
async def test_hostile_bodies_are_a_4xx_naming_the_problem(
    tmp_path: Path, content: bytes, content_type: str, status: int, message: str
) -> None:
    async with serving(tmp_path) as edge:
        headers = {"Content-Type": content_type} if content_type else {}
        response = await edge.http.post("/hooks/ops/am", content=content, headers=headers)

        assert response.status_code == status
        assert message in response.json()["error"]
        assert edge.bus.published == []


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    tmp_path: Path,
) -> None:
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            read.append(1)
            yield b"x" * 1024

    async with serving(tmp_path) as edge:
        response = await edge.http.post(
            "/hooks/ops/am",
            content=body(),
            headers={"Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)},
        )

    assert response.status_code == 413
    assert len(read) <= 1, "ingest did not read the body it refused"


async def test_a_422_names_the_field_that_is_wrong(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        body = payload("a")
        del body["alerts"][0]["startsAt"]

        response = await edge.http.post("/hooks/ops/am", json=body)

        assert response.status_code == 422
        assert "alerts[0].startsAt: Field required" in response.json()["error"]


async def test_valid_credentials_open_a_protected_source(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        token = base64.b64encode(b"am:s3cret").decode()
        response = await edge.http.post(
            "/hooks/ops/locked", json=payload("a"), headers={"Authorization": f"Basic {token}"}
        )
        assert response.status_code == 200


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_bearer_source_checks_the_token_against_its_secret_at_each_request(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        accepted = await edge.http.post(
            "/hooks/ops/guarded", json=payload("a"), headers=bearer("first-token")
        )
        wrong = await edge.http.post(
            "/hooks/ops/guarded", json=payload("b"), headers=bearer("first-token-not")
        )
        edge.secrets.put("ops", "ingest-token", token="second-token")  # rotated
        old = await edge.http.post(
            "/hooks/ops/guarded", json=payload("c"), headers=bearer("first-token")
        )
        new = await edge.http.post(
            "/hooks/ops/guarded", json=payload("d"), headers=bearer("second-token")
        )

    assert [r.status_code for r in (accepted, wrong, old, new)] == [200, 401, 401, 200]
    assert [m.alert.fingerprint for m in edge.bus.messages(AlertReceived)] == ["a", "d"]
    assert wrong.json() == {"error": "Source ops/guarded requires valid credentials"}


@pytest.mark.parametrize(
    ("path", "credentials", "break_secret"),
    [
        ("/hooks/ops/guarded", "Bearer first-token", "remove"),
        ("/hooks/ops/guarded", "Bearer first-token", "unreachable"),
        ("/hooks/ops/locked", "Basic " + base64.b64encode(b"am:s3cret").decode(), "no key"),
    ],
)
async def test_a_source_whose_secret_cannot_be_resolved_refuses_with_a_503_naming_it(
    tmp_path: Path, path: str, credentials: str, break_secret: str
) -> None:
    async with serving(tmp_path) as edge:
        secret = "ops/ingest-token" if "guarded" in path else "ops/creds"
        if break_secret == "remove":
            edge.secrets.remove("ops", "ingest-token")
        elif break_secret == "unreachable":
            edge.secrets.fail_next()
        else:
            edge.secrets.put("ops", "creds", user="am")  # the password key is gone
        with structlog.testing.capture_logs() as logs:
            response = await edge.http.post(
                path, json=payload("a"), headers={"Authorization": credentials}
            )

    assert response.status_code == 503
    source = path.removeprefix("/hooks/")
    assert response.json() == {
        "error": f"Source {source} cannot check credentials: its Secret {secret} is "
        "unavailable; retry later"
    }
    assert response.headers["Retry-After"] == "5"
    assert edge.bus.published == []
    (logged,) = [e for e in logs if e["event"] == "source_secret_unavailable"]
    assert logged["log_level"] == "error"
    assert f"Secret {secret}" in logged["error"]
    assert "s3cret" not in str(logs)
    assert "first-token" not in str(logs)


async def test_a_request_without_credentials_is_refused_whether_or_not_the_secret_resolves(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:

        async def anonymous(fingerprint: str) -> httpx.Response:
            request = edge.http.build_request(
                "POST", "/hooks/ops/guarded", json=payload(fingerprint)
            )
            del request.headers["Authorization"]  # the client's API token: not for hooks
            return await edge.http.send(request)

        present = await anonymous("a")
        edge.secrets.remove("ops", "ingest-token")
        missing = await anonymous("b")

    assert [present.status_code, missing.status_code] == [401, 401]
    assert edge.bus.published == []


async def test_before_the_definitions_are_loaded_webhooks_are_asked_to_retry(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, definitions=DefinitionsView()) as edge:
        response = await edge.http.post("/hooks/ops/am", json=payload("a"))
        assert response.status_code == 503
        assert "not loaded yet" in response.json()["error"]


async def test_a_source_type_this_build_cannot_read_is_a_501(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        bus = RecordingPublisher()
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions_view(DEFINITIONS),
            sources={},
            secrets=MemorySecrets(),
            max_body_bytes=MAX_BODY,
        )
        transport = httpx.ASGITransport(app=build_app(ingest, checks={}, tokens=None))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            response = await http.post("/hooks/ops/am", json=payload("a"))
        assert response.status_code == 501
        assert response.json() == {
            "error": "Source type alertmanager is not available in this build"
        }
        assert bus.published == []


async def test_cancel_and_run_are_sent_to_the_engine_as_commands(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        missing = await edge.http.post("/api/v1/executions/01NOPE/cancel", json={})
        assert missing.status_code == 404
        assert missing.json() == {"error": "no execution 01NOPE"}

        run = await edge.http.post(
            "/api/v1/workflows/ops/disk/run", json={"labels": {"alertname": "DiskFull"}}
        )
        assert run.status_code == 202
        execution_id = run.json()["executionId"]
        (command,) = edge.bus.messages(RunRequested, "vigil.control.run")
        assert command.execution_id == execution_id
        assert command.alert.labels == {"alertname": "DiskFull"}
        assert edge.bus.messages(CancelRequested) == []

        unknown = await edge.http.post(
            "/api/v1/workflows/ops/nope/run", json={"labels": {"alertname": "X"}}
        )
        assert unknown.status_code == 404


async def test_each_scrape_reads_the_monitored_consumers_lag_from_the_bus(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        edge.bus.stats[("RESULTS", "engine")] = ConsumerStats(
            stream="RESULTS", consumer="engine", stream_messages=9, pending=4, in_flight=2
        )
        first = (await edge.http.get("/metrics")).text
        edge.bus.stats[("RESULTS", "engine")] = ConsumerStats(
            stream="RESULTS", consumer="engine", stream_messages=9, pending=0, in_flight=1
        )
        second = (await edge.http.get("/metrics")).text

    assert 'vigil_consumer_lag{consumer="engine",stream="RESULTS"} 6.0' in first
    assert 'vigil_consumer_pending{consumer="engine",stream="RESULTS"} 4.0' in first
    assert 'vigil_consumer_lag{consumer="engine",stream="RESULTS"} 1.0' in second


async def test_stats_report_the_monitored_consumers_in_camel_case(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        edge.bus.stats[("ALERTS", "engine")] = ConsumerStats(
            stream="ALERTS",
            consumer="engine",
            stream_messages=10,
            acknowledged=7,
            pending=2,
            in_flight=1,
        )

        stats = (await edge.http.get("/api/v1/stats")).json()

        assert stats == {
            "alerts": {"received": 10, "recorded": 7},
            "executions": {},
            "consumers": [
                {"stream": "ALERTS", "consumer": "engine", "lag": 3, "pending": 2, "inFlight": 1}
            ],
        }


async def test_every_api_endpoint_documents_its_response_schema(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        schema = (await edge.http.get("/openapi.json")).json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"][
                next(code for code in operation["responses"] if code.startswith("2"))
            ].get("content", {})
            ok_schema = content.get("application/json", {}).get("schema", {})
            assert ok_schema.get("$ref") or ok_schema.get("type") == "array", (
                f"{method.upper()} {path} has no response model"
            )


async def test_documents_and_definitions_are_shown_in_camel_case(tmp_path: Path) -> None:
    view = definitions_view(DEFINITIONS)
    status = DefinitionStatus(
        kind="Workflow",
        namespace="ops",
        name="disk",
        ready=True,
        message="valid",
        observed_at=EPOCH,
    )
    view.apply(status_key("Workflow", "ops", "disk"), status.model_dump_json().encode())
    async with serving(tmp_path, definitions=view) as edge:
        stored = make_execution("01EX", at=EPOCH, namespace="ops", workflow="disk")
        assert await edge.store.insert_execution(stored)

        execution = (await edge.http.get("/api/v1/executions/01EX")).json()
        page = (await edge.http.get("/api/v1/executions", params={"workflow": "disk"})).json()
        definitions = (await edge.http.get("/api/v1/definitions")).json()

    assert execution["id"] == "01EX"
    assert {"createdAt", "concurrencyKey", "triggerKey", "alertId"} <= execution.keys()
    assert "created_at" not in execution
    assert {"startedAt", "finishedAt", "onFailure"} <= execution["steps"][0].keys()
    assert execution["alert"]["startsAt"] == "2025-12-31T23:55:00Z"
    assert [item["id"] for item in page["items"]] == ["01EX"]
    assert page["next"] is None
    assert definitions == {
        "items": [
            {
                "kind": "Workflow",
                "namespace": "ops",
                "name": "disk",
                "ready": True,
                "message": "valid",
                "origin": "",
                "observedAt": "2026-01-01T00:00:00Z",
                "nextFireAt": None,
            }
        ]
    }


async def test_an_execution_links_to_its_trace_when_a_trace_ui_is_configured(
    tmp_path: Path,
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    stored = make_execution("01EX", at=EPOCH, namespace="ops", workflow="disk").model_copy(
        update={"trace_id": trace_id}
    )
    untraced = make_execution("01NT", at=EPOCH, namespace="ops", workflow="disk")
    async with serving(tmp_path, trace_url="https://jaeger.test/trace/{trace_id}") as edge:
        assert await edge.store.insert_execution(stored)
        assert await edge.store.insert_execution(untraced)

        execution = (await edge.http.get("/api/v1/executions/01EX")).json()
        assert execution["traceId"] == trace_id
        assert execution["traceUrl"] == f"https://jaeger.test/trace/{trace_id}"
        assert (await edge.http.get("/api/v1/executions/01NT")).json()["traceUrl"] is None
    async with serving(tmp_path / "plain") as edge:
        assert await edge.store.insert_execution(stored)
        assert (await edge.http.get("/api/v1/executions/01EX")).json()["traceUrl"] is None


async def test_an_unknown_execution_or_artifact_is_a_404_naming_it(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        execution = await edge.http.get("/api/v1/executions/01NOPE")
        artifact = await edge.http.get("/api/v1/artifacts/01NOPE/measure/1/output")

    assert (execution.status_code, execution.json()) == (404, {"error": "no execution 01NOPE"})
    assert (artifact.status_code, artifact.json()) == (
        404,
        {"error": "no artifact 01NOPE/measure/1/output"},
    )


@pytest.mark.parametrize(
    ("matcher", "problem"),
    [
        ('x=~"(a)\\\\1"', "invalid escape sequence"),  # a backreference
        ('x!~"(?<=a)b"', "invalid perl operator"),  # lookbehind
        (f'x=~"{"a" * 1025}"', "is 1025 bytes long; the limit is 1024"),
        ('x=~".{1000}"', "too complex"),
    ],
    ids=["backreference", "lookbehind", "too-long", "too-complex"],
)
async def test_a_match_re2_cannot_run_is_a_400_naming_the_matcher(
    tmp_path: Path, matcher: str, problem: str
) -> None:
    async with serving(tmp_path) as edge:
        response = await edge.http.get(
            "/api/v1/alerts", params={"match": ['alertname="DiskFull"', matcher]}
        )

        assert response.status_code == 400
        error = response.json()["error"]
        assert error.startswith(f"match: matcher {matcher!r}: ")
        assert problem in error


async def test_match_filters_the_alert_history_with_anchored_re2_regexes(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        for number, pod in enumerate(["api-1", "api-12", "db-1", "xapi-1"]):
            await edge.store.record_alert(
                make_occurrence(
                    at=EPOCH + timedelta(seconds=number),
                    fingerprint=f"fp-{number}",
                    labels={"alertname": "Down", "pod": pod},
                )
            )

        response = await edge.http.get("/api/v1/alerts", params={"match": r'pod=~"api-\\d"'})

        assert response.status_code == 200
        assert [a["labels"]["pod"] for a in response.json()["items"]] == ["api-1"]
        assert response.json()["next"] is None
