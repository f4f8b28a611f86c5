"""Ingest over the shipped fakes, for the tests (and the console benchmark) that serve its
app: the store given, a recording bus, the definitions given, no Secrets."""

from __future__ import annotations

from datetime import datetime

from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import DefinitionStatus, DefinitionsView, status_key
from vigil.common.store import Store
from vigil.common.testing import MemorySecrets, RecordingPublisher
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.hooks import Ingest

MAX_BODY_BYTES = 64 * 1024


def fake_ingest(
    store: Store,
    definitions: DefinitionsView,
    *,
    bus: RecordingPublisher | None = None,
    clock: Clock = SYSTEM_CLOCK,
    trace_url: str | None = None,
) -> Ingest:
    return Ingest(
        bus=bus or RecordingPublisher(),
        store=store,
        definitions=definitions,
        sources={"alertmanager": AlertmanagerSource()},
        secrets=MemorySecrets(),
        max_body_bytes=MAX_BODY_BYTES,
        clock=clock,
        trace_url=trace_url,
    )


def report_statuses(
    view: DefinitionsView,
    namespace: str,
    reported: list[tuple[str, str, bool, str]],
    *,
    at: datetime,
) -> DefinitionsView:
    """What the controller would have reported of each `(kind, name, ready, message)`."""
    for kind, name, ready, message in reported:
        status = DefinitionStatus(
            kind=kind, namespace=namespace, name=name, ready=ready, message=message, observed_at=at
        )
        view.apply(status_key(kind, namespace, name), status.model_dump_json().encode())
    return view
