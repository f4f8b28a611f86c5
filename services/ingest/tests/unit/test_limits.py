"""Ingest's limits and refusals, over the real ASGI app with the shipped fakes: a body with a
label, an annotation or an alert over its size limit, or an alert over the bus's largest
message, is a 413 naming the alert and the key, and nothing of it is published; every
client error, FastAPI's own validation and routing errors too, is an `{"error": ...}`
naming the problem; and every refusal is counted by reason in `/metrics`."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.support.definitions import alertmanager_body, alertmanager_source, firing_alert
from vigil.common.adapters.http_limits import HttpLimits
from vigil.common.definitions import DefinitionsView
from vigil.common.testing import (
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import FixedTokens, parse_tokens
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.alert_limits import AlertLimits
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest
from vigil.ingest.rejections import REASONS
from vigil.ingest.settings import IngestSettings

READER = "reader-token-0123456789"
OPERATOR = "operator-token-0123456789"
DEFINITIONS = (
    alertmanager_source("ops")
    + """---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: locked, namespace: ops}
spec:
  type: alertmanager
  auth: {bearerTokenSecretRef: {name: creds, key: token}}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ops}
stringData: {token: s3cret}
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
MAX_BODY = 256 * 1024
KIB = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    http: httpx.AsyncClient
    bus: RecordingPublisher

    async def post_alerts(
        self, body: dict[str, Any], path: str = "/hooks/ops/am"
    ) -> httpx.Response:
        return await self.http.post(path, json=body)

    async def rejected(self) -> dict[str, float]:
        """`vigil_ingest_rejected_total` by reason, as /metrics shows it."""
        text = (await self.http.get("/metrics")).text
        found = re.findall(r'^vigil_ingest_rejected_total\{reason="([a-z_]+)"\} (\S+)$', text, re.M)
        return {reason: float(value) for reason, value in found}


@contextlib.asynccontextmanager
async def serving(
    folder: Path,
    *,
    limits: AlertLimits | None = None,
    definitions: DefinitionsView | None = None,
) -> AsyncIterator[Edge]:
    async with sqlite_store(folder) as store:
        bus = RecordingPublisher()
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions or definitions_view(DEFINITIONS),
            sources={"alertmanager": AlertmanagerSource()},
            secrets=MemorySecrets.of(DEFINITIONS),
            max_body_bytes=MAX_BODY,
            alert_limits=limits or AlertLimits(),
            clock=FakeClock(),
        )
        tokens = FixedTokens(parse_tokens(f"{READER} read\n{OPERATOR} operate\n", origin="t"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(ingest, checks={}, tokens=tokens)),
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {OPERATOR}"},
        ) as http:
            yield Edge(http=http, bus=bus)


def two_alerts(**group: Any) -> dict[str, Any]:
    return alertmanager_body(
        [
            {**firing_alert("DiskFull", instance="a"), "fingerprint": "a"},
            {**firing_alert("DiskFull", instance="b"), "fingerprint": "b"},
        ],
        **group,
    )


def with_second_alert(field: str, key: str, value: str) -> dict[str, Any]:
    body = two_alerts()
    body["alerts"][1].setdefault(field, {})[key] = value
    return body


# --- sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        pytest.param(
            with_second_alert("labels", "description", "x" * (20 * KIB)),
            "label_too_large",
            "alerts[1].labels.description: the value is 20480 bytes, over the limit of 16384 "
            "bytes per label or annotation",
            id="label value",
        ),
        pytest.param(
            with_second_alert("annotations", "summary", "é" * (9 * KIB)),
            "label_too_large",
            "alerts[1].annotations.summary: the value is 18432 bytes, over the limit of 16384 "
            "bytes per label or annotation",
            id="annotation value in UTF-8 bytes",
        ),
        pytest.param(
            with_second_alert("labels", "k" * (17 * KIB), "v"),
            "label_too_large",
            f"alerts[1].labels.{'k' * 64}…: the name is 17408 bytes, over the limit of 16384 "
            "bytes per label or annotation",
            id="label name, cut short",
        ),
        pytest.param(
            {
                **two_alerts(),
                "alerts": [
                    firing_alert("DiskFull", instance="a"),
                    {
                        **firing_alert("DiskFull", instance="b"),
                        "annotations": {f"note{n}": "x" * (15 * KIB) for n in range(5)},
                    },
                ],
            },
            "labels_too_large",
            "alerts[1]: its labels and annotations are 76851 bytes together, over the limit "
            "of 65536 bytes",
            id="one alert's together",
        ),
        pytest.param(
            two_alerts(commonAnnotations={"runbook": "x" * (17 * KIB)}),
            "label_too_large",
            "commonAnnotations.runbook: the value is 17408 bytes, over the limit of 16384 "
            "bytes per label or annotation",
            id="the group's",
        ),
    ],
)
async def test_a_body_with_a_label_over_its_limit_is_a_413_naming_it_and_nothing_is_stored(
    tmp_path: Path, body: dict[str, Any], reason: str, message: str
) -> None:
    async with serving(tmp_path) as edge:
        before = await edge.rejected()

        response = await edge.post_alerts(body)

        assert (response.status_code, response.json()) == (413, {"error": message})
        assert edge.bus.published == []
        assert (await edge.rejected())[reason] == before[reason] + 1


async def test_labels_within_the_limits_are_accepted(tmp_path: Path) -> None:
    limits = AlertLimits(max_label_bytes=4 * KIB, max_alert_label_bytes=16 * KIB)
    body = with_second_alert("annotations", "description", "x" * (4 * KIB - len("description")))
    async with serving(tmp_path, limits=limits) as edge:
        response = await edge.post_alerts(body)

    assert (response.status_code, response.json()) == (200, {"accepted": 2, "new": 2})


async def test_an_alert_over_the_bus_largest_message_is_a_413_naming_it_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    body = two_alerts()
    body["alerts"][1]["generatorURL"] = "http://prometheus/graph?g0.expr=" + "x" * 6000
    async with serving(tmp_path) as edge:
        edge.bus.max_payload = 4096
        before = await edge.rejected()

        response = await edge.post_alerts(body)

        assert response.status_code == 413
        error = response.json()["error"]
        assert error.startswith("alerts[1] is ")
        assert "over the bus's largest message (4096 bytes)" in error
        assert "nothing of this body was stored" in error
        assert edge.bus.published == [], "the first alert must not be stored either"
        assert (await edge.rejected())["over_max_payload"] == before["over_max_payload"] + 1


async def test_a_manual_run_with_a_label_over_its_limit_is_a_413_naming_it(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        response = await edge.http.post(
            "/api/v1/workflows/ops/disk/run", json={"labels": {"alertname": "x" * (17 * KIB)}}
        )

    assert response.status_code == 413
    assert response.json()["error"].startswith("body.labels.alertname: the value is 17408 bytes")
    assert edge.bus.published == []


def test_the_limits_are_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_INGEST_API_AUTH", "none")
    for name, value in {
        "MAX_LABEL_BYTES": "1024",
        "MAX_ALERT_LABEL_BYTES": "4096",
        "HEADER_TIMEOUT_SECONDS": "2.5",
        "BODY_TIMEOUT_SECONDS": "7",
        "KEEP_ALIVE_SECONDS": "3",
        "MAX_CONNECTIONS": "64",
        "MAX_HEADER_BYTES": "8192",
    }.items():
        monkeypatch.setenv(f"VIGIL_INGEST_{name}", value)

    settings = IngestSettings()

    assert settings.alert_limits() == AlertLimits(max_label_bytes=1024, max_alert_label_bytes=4096)
    assert settings.http_limits() == HttpLimits(
        header_timeout_seconds=2.5,
        body_timeout_seconds=7.0,
        keep_alive_seconds=3,
        max_connections=64,
        max_header_bytes=8192,
    )
    monkeypatch.setenv("VIGIL_INGEST_MAX_LABEL_BYTES", "8192")
    with pytest.raises(ValidationError, match=r"MAX_LABEL_BYTES \(8192\) must not be over"):
        IngestSettings()
    monkeypatch.setenv("VIGIL_INGEST_BODY_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValidationError, match="body_timeout_seconds"):
        IngestSettings()


# --- error bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content", "status", "message"),
    [
        (
            "GET /api/v1/executions?limit=many",
            None,
            422,
            "query parameter limit: Input should be a valid integer, unable to parse string "
            "as an integer",
        ),
        (
            "GET /api/v1/alerts?limit=0",
            None,
            422,
            "query parameter limit: Input should be greater than or equal to 1",
        ),
        (
            "POST /hooks/OPS/am",
            b"{}",
            422,
            "path parameter namespace: String should match pattern "
            "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (
            "POST /hooks/ops%0A/am",
            b"{}",
            422,
            "path parameter namespace: String should match pattern "
            "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (
            "POST /hooks/ops/" + "a" * 64,
            b"{}",
            422,
            "path parameter source: String should have at most 63 characters",
        ),
        ("POST /api/v1/workflows/ops/disk/run", b"{}", 422, "body.labels: Field required"),
        (
            "POST /api/v1/workflows/ops/disk/run",
            b'{"labels": {"a": 1}}',
            422,
            "body.labels.a: Input should be a valid string",
        ),
        (
            "POST /api/v1/workflows/ops/disk/run",
            b'{"labels": {"a": "\\ud800"}}',
            422,
            "body.labels.a: holds invalid Unicode (a lone surrogate)",
        ),
        (
            "POST /api/v1/workflows/ops/disk/run",
            b'{"labels": ',
            422,
            "body is not valid JSON: Expecting value at character 11",
        ),
        (
            "POST /api/v1/workflows/ops/disk/run",
            b"[" * 30_000 + b"]" * 30_000,
            400,
            "body is nested too deeply",
        ),
        ("GET /api/v1/nope", None, 404, "no such path: /api/v1/nope"),
        ("DELETE /api/v1/executions", None, 405, "DELETE is not allowed on /api/v1/executions"),
    ],
)
async def test_every_client_error_is_an_error_body_naming_the_problem(
    tmp_path: Path, target: str, content: bytes | None, status: int, message: str
) -> None:
    method, path = target.split(" ", 1)
    async with serving(tmp_path) as edge:
        response = await edge.http.request(
            method, path, content=content, headers={"Content-Type": "application/json"}
        )

    assert (response.status_code, response.json()) == (status, {"error": message})


async def test_the_openapi_document_says_a_422_is_an_error_body(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        schema = (await edge.http.get("/openapi.json")).json()

    answers = [
        operation["responses"]["422"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        if "422" in operation["responses"]
    ]
    assert answers, "some operation validates its request"
    for answer in answers:
        content = answer["content"]["application/json"]["schema"]
        assert content == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# --- counted by reason ------------------------------------------------------------------


def _request(
    method: str,
    path: str,
    *,
    body: bytes | dict[str, Any] = b"",
    content_type: str = "application/json",
    token: str | None = OPERATOR,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": content_type, **(headers or {})}
    sent["Authorization"] = f"Bearer {token}" if token else ""
    return {"method": method, "url": path, "content": content, "headers": sent}


ALERTS = two_alerts()
COUNTED = [
    ("unknown_source", _request("POST", "/hooks/ops/nope", body=ALERTS)),
    ("unauthorized", _request("POST", "/hooks/ops/locked", body=ALERTS)),
    (
        "unsupported_media_type",
        _request("POST", "/hooks/ops/am", body=b"{}", content_type="text/plain"),
    ),
    ("too_large", _request("POST", "/hooks/ops/am", body=b" " * (MAX_BODY + 1))),
    ("bad_json", _request("POST", "/hooks/ops/am", body=b"{nope")),
    ("too_deep", _request("POST", "/hooks/ops/am", body=b"[" * 30_000 + b"]" * 30_000)),
    ("invalid_unicode", _request("POST", "/hooks/ops/am", body=b'{"a": "\\ud800"}')),
    ("invalid_payload", _request("POST", "/hooks/ops/am", body={"alerts": "x"})),
    ("no_token", _request("GET", "/api/v1/executions", token=None)),
    ("bad_token", _request("GET", "/api/v1/executions", token="not-a-token-at-all-0000")),
    ("missing_scope", _request("POST", "/api/v1/workflows/ops/disk/run", body={}, token=READER)),
    ("invalid_request", _request("GET", "/api/v1/executions?limit=many")),
    ("no_route", _request("GET", "/api/v1/nope")),
]


@pytest.mark.parametrize(("reason", "request_args"), COUNTED, ids=[r for r, _ in COUNTED])
async def test_each_refusal_is_counted_by_its_reason(
    tmp_path: Path, reason: str, request_args: dict[str, Any]
) -> None:
    async with serving(tmp_path) as edge:
        before = await edge.rejected()

        response = await edge.http.request(**request_args)

        after = await edge.rejected()
    assert 400 <= response.status_code < 500
    assert "error" in response.json()
    changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert changed == {reason: 1.0}


async def test_503s_ingest_answers_itself_are_counted_too(tmp_path: Path) -> None:
    async with serving(tmp_path, definitions=DefinitionsView()) as edge:
        before = await edge.rejected()
        assert (await edge.post_alerts(ALERTS)).status_code == 503
        assert (await edge.rejected())["not_ready"] == before["not_ready"] + 1
    async with serving(tmp_path) as edge:
        edge.bus.fail_next()
        before = await edge.rejected()
        assert (await edge.post_alerts(ALERTS)).status_code == 503
        assert (await edge.rejected())["not_stored"] == before["not_stored"] + 1


async def test_every_reason_is_exported_from_the_start(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        assert set(await edge.rejected()) == set(REASONS)
