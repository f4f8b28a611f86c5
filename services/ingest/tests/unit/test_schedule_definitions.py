"""`GET /api/v1/definitions` shows when a schedule Source fires next: from its last fired
tick in the store (a missed tick it will catch up on is due now), else the next tick; and
nothing can be posted to a schedule Source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vigil.common.definitions import DefinitionStatus, status_key
from vigil.common.store import Store
from vigil.common.testing import (
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest

NOW = datetime(2026, 5, 1, 10, 7, tzinfo=UTC)
DEFINITIONS = """
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: nightly, namespace: ops}
spec:
  type: schedule
  schedule: {cron: "30 2 * * *", timeZone: Europe/Paris, labels: {alertname: Nightly}}
---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: often, namespace: ops}
spec:
  type: schedule
  schedule: {cron: "*/5 * * * *", catchUp: one}
---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: ops}
spec: {type: alertmanager}
"""


def serving(store: Store, bus: RecordingPublisher | None = None) -> httpx.AsyncClient:
    view = definitions_view(DEFINITIONS)
    for name in ("nightly", "often", "am"):
        status = DefinitionStatus(
            kind="Source", namespace="ops", name=name, ready=True, message="valid", observed_at=NOW
        )
        view.apply(status_key("Source", "ops", name), status.model_dump_json().encode())
    ingest = Ingest(
        bus=bus or RecordingPublisher(),
        store=store,
        definitions=view,
        sources={},
        secrets=MemorySecrets(),
        max_body_bytes=1024,
        clock=FakeClock(NOW),
    )
    transport = httpx.ASGITransport(app=build_app(ingest, checks={}, tokens=None))
    return httpx.AsyncClient(transport=transport, base_url="http://ingest")


async def definitions(store: Store) -> dict[str, Any]:
    async with serving(store) as http:
        response = await http.get("/api/v1/definitions")
    assert response.status_code == 200
    return {item["name"]: item.get("nextFireAt") for item in response.json()["items"]}


async def test_a_schedule_that_never_fired_shows_its_next_tick(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        shown = await definitions(store)

    assert shown == {
        "am": None,
        "nightly": "2026-05-02T00:30:00Z",  # 02:30 in Paris (CEST)
        "often": "2026-05-01T10:10:00Z",
    }


async def test_a_missed_tick_to_catch_up_on_is_shown_as_due(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        assert await store.claim_tick("ops/often", datetime(2026, 5, 1, 9, 0, tzinfo=UTC))
        assert await store.claim_tick("ops/nightly", datetime(2026, 5, 1, 0, 30, tzinfo=UTC))
        shown = await definitions(store)

    assert shown["often"] == "2026-05-01T10:05:00Z"  # missed while no engine ran: fires now
    assert shown["nightly"] == "2026-05-02T00:30:00Z"


async def test_a_post_to_a_schedule_source_is_refused_naming_why(tmp_path: Path) -> None:
    bus = RecordingPublisher()
    async with sqlite_store(tmp_path) as store, serving(store, bus) as http:
        response = await http.post("/hooks/ops/nightly", json={"alerts": []})

    assert response.status_code == 405
    assert response.json() == {
        "error": "Source ops/nightly is a schedule: the engine fires it at its ticks,"
        " nothing can be posted to it"
    }
    assert bus.published == []
