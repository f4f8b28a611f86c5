"""HMAC-signed webhooks through the real ASGI app with the shipped fakes: a good GitHub- or
Grafana-style signature is accepted, a missing or bad one is a 401 naming what was wrong,
and nothing of a refused body is published. Also the webhook source's 422 and size limits
as a sender sees them."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from vigil.common.messages import AlertReceived
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import FixedTokens, TokenTable
from vigil.ingest.adapters.webhook import WebhookSource
from vigil.ingest.alert_limits import AlertLimits
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest

EXAMPLES = Path(__file__).parents[4] / "examples" / "sources"
CORPUS = Path(__file__).parent / "webhook_corpus"
GITHUB_SECRET = "change-me-github-webhook-secret"  # examples/sources/github-events.yaml
GRAFANA_SECRET = "change-me-grafana-hmac-secret"  # examples/sources/grafana-webhook.yaml
DEFINITIONS = (
    (EXAMPLES / "github-events.yaml").read_text()
    + "\n---\n"
    + (EXAMPLES / "grafana-webhook.yaml").read_text()
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    http: httpx.AsyncClient
    bus: RecordingPublisher
    clock: FakeClock
    secrets: MemorySecrets


@contextlib.asynccontextmanager
async def serving(folder: Path, *, limits: AlertLimits | None = None) -> AsyncIterator[Edge]:
    async with sqlite_store(folder) as store:
        bus = RecordingPublisher()
        clock = FakeClock()
        secrets = MemorySecrets.of(DEFINITIONS)
        ingest = Ingest(
            bus=bus,
            store=store,
            definitions=definitions_view(DEFINITIONS),
            sources={"webhook": WebhookSource(clock=clock)},
            secrets=secrets,
            max_body_bytes=1024 * 1024,
            alert_limits=limits or AlertLimits(),
            clock=clock,
        )
        app = build_app(ingest, checks={}, tokens=FixedTokens(TokenTable.of("operator-token")))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingest"
        ) as http:
            yield Edge(http=http, bus=bus, clock=clock, secrets=secrets)


def github_body() -> bytes:
    return (CORPUS / "github-workflow-run.json").read_bytes()


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(edge: Edge, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await edge.http.post(
        path, content=body, headers={"Content-Type": "application/json", **headers}
    )


async def test_a_github_body_with_its_signature_is_accepted(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        body = github_body()
        signed = {"X-Hub-Signature-256": github_signature(body), "X-GitHub-Event": "workflow_run"}

        response = await post(edge, "/hooks/ci/github", body, signed)

        assert response.status_code == 200, response.text
        (received,) = edge.bus.messages(AlertReceived)
        assert received.alert.labels["repository"] == "acme/shop"


async def test_a_missing_or_bad_github_signature_is_a_401_naming_it_and_stores_nothing(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        body = github_body()
        tampered = body.replace(b'"main"', b'"evil"', 1)
        cases = {
            "missing signature header X-Hub-Signature-256": {},
            "bad signature in X-Hub-Signature-256": {
                "X-Hub-Signature-256": github_signature(body, "another-secret")
            },
            "X-Hub-Signature-256 does not start with 'sha256='": {
                "X-Hub-Signature-256": github_signature(body).removeprefix("sha256=")
            },
        }
        for problem, headers in cases.items():
            response = await post(edge, "/hooks/ci/github", body, headers)
            assert response.status_code == 401, problem
            assert problem in response.json()["error"]
        signed_original = {"X-Hub-Signature-256": github_signature(body)}
        response = await post(edge, "/hooks/ci/github", tampered, signed_original)
        assert response.status_code == 401
        assert "bad signature" in response.json()["error"]
        assert edge.bus.published == []


def grafana_headers(body: bytes, stamp: int) -> dict[str, str]:
    signed = f"{stamp}:".encode() + body
    digest = hmac.new(GRAFANA_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return {
        "X-Grafana-Alerting-Signature": digest,
        "X-Grafana-Alerting-Timestamp": str(stamp),
    }


async def test_a_grafana_signature_covers_the_timestamp_and_a_stale_one_is_refused(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        body = (CORPUS / "grafana.json").read_bytes()
        now = int(EPOCH.timestamp())

        fresh = await post(edge, "/hooks/monitoring/grafana", body, grafana_headers(body, now))
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["accepted"] == 2

        stale = await post(
            edge, "/hooks/monitoring/grafana", body, grafana_headers(body, now - 3600)
        )
        assert stale.status_code == 401
        assert "X-Grafana-Alerting-Timestamp is 3600s away from now" in stale.json()["error"]

        moved = grafana_headers(body, now)
        moved["X-Grafana-Alerting-Timestamp"] = str(now - 1)  # signed for another time
        assert (await post(edge, "/hooks/monitoring/grafana", body, moved)).status_code == 401

        unstamped = grafana_headers(body, now)
        del unstamped["X-Grafana-Alerting-Timestamp"]
        missing = await post(edge, "/hooks/monitoring/grafana", body, unstamped)
        assert missing.status_code == 401
        assert "missing timestamp header X-Grafana-Alerting-Timestamp" in missing.json()["error"]
        assert len(edge.bus.published) == 2  # only the fresh body's alerts


async def test_a_signed_body_the_mapping_cannot_read_is_a_422_naming_the_field(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        document = json.loads((CORPUS / "grafana.json").read_text())
        del document["alerts"][1]["status"]
        body = json.dumps(document).encode()
        now = int(EPOCH.timestamp())

        response = await post(edge, "/hooks/monitoring/grafana", body, grafana_headers(body, now))

        assert response.status_code == 422
        assert response.json()["error"].startswith("items[1].status: no such key 'status'")
        assert edge.bus.published == []


async def test_webhook_alerts_are_held_to_the_alert_size_limits(tmp_path: Path) -> None:
    async with serving(tmp_path, limits=AlertLimits(max_label_bytes=64)) as edge:
        document = json.loads(github_body())
        document["workflow_run"]["name"] = "W" * 65
        body = json.dumps(document).encode()

        response = await post(
            edge, "/hooks/ci/github", body, {"X-Hub-Signature-256": github_signature(body)}
        )

        assert response.status_code == 413
        assert response.json()["error"].startswith("alerts[0].labels.workflow: the value is 65")
        assert edge.bus.published == []


async def test_a_signing_secret_that_cannot_be_read_is_a_503_naming_it_and_stores_nothing(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        body = github_body()
        edge.secrets.remove("ci", "github-webhook")

        response = await post(
            edge, "/hooks/ci/github", body, {"X-Hub-Signature-256": github_signature(body)}
        )

        assert response.status_code == 503
        assert "ci/github-webhook" in response.json()["error"]
        assert response.headers["Retry-After"] == "5"
        assert edge.bus.published == []


async def test_a_rotated_signing_secret_counts_from_the_next_request(tmp_path: Path) -> None:
    async with serving(tmp_path) as edge:
        body = github_body()
        edge.secrets.put("ci", "github-webhook", secret="rotated-secret")

        old = await post(
            edge, "/hooks/ci/github", body, {"X-Hub-Signature-256": github_signature(body)}
        )
        new = await post(
            edge,
            "/hooks/ci/github",
            body,
            {"X-Hub-Signature-256": github_signature(body, "rotated-secret")},
        )

        assert (old.status_code, new.status_code) == (401, 200)


def grafana_with(count: int) -> bytes:
    document = json.loads((CORPUS / "grafana.json").read_text())
    first = document["alerts"][0]
    document["alerts"] = [
        {**first, "fingerprint": f"fp{n}", "labels": {**first["labels"], "instance": f"web-{n}"}}
        for n in range(count)
    ]
    return json.dumps(document).encode()


async def test_a_large_body_is_read_whole_and_one_over_the_item_limit_is_a_422(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        now = int(EPOCH.timestamp())
        largest = grafana_with(1000)  # over INLINE_READ_BYTES: read off the event loop
        assert len(largest) > 64 * 1024

        accepted = await post(
            edge, "/hooks/monitoring/grafana", largest, grafana_headers(largest, now)
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == {"accepted": 1000, "new": 1000}

        edge.bus.clear()
        over = grafana_with(1001)
        refused = await post(edge, "/hooks/monitoring/grafana", over, grafana_headers(over, now))
        assert refused.status_code == 422
        assert refused.json()["error"].startswith(
            "items: 1001 items, over the limit of 1000 alerts per body"
        )
        assert edge.bus.published == []


async def test_a_timestamp_that_is_no_unix_time_is_a_401_naming_the_header(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as edge:
        body = (CORPUS / "grafana.json").read_bytes()
        for stamp in (10**40, -5):
            headers = grafana_headers(body, stamp)  # signed, but no plausible time
            response = await post(edge, "/hooks/monitoring/grafana", body, headers)
            assert response.status_code == 401
            assert "X-Grafana-Alerting-Timestamp is not Unix seconds" in response.json()["error"]
        assert edge.bus.published == []
