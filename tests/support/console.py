"""The console app over the shipped fakes, for the console's unit tests: a SQLite store,
a recording bus, definitions with reported statuses, a fixed clock and two tokens."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from tests.support.definitions import alertmanager_source, log_sink
from tests.support.documents import make_execution, make_finished_run
from tests.support.ingest import fake_ingest, report_statuses
from vigil.common.documents import Execution
from vigil.common.messages import ExecutionState
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import FixedTokens, parse_tokens
from vigil.ingest.api import build_app

READER = "reader-token-0123456789"
OPERATOR = "operator-token-0123456789"
TOKENS = FixedTokens(parse_tokens(f"{READER} read\n{OPERATOR} operate\n", origin="t"))
WORKFLOWS = """---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: disk, namespace: ops}
spec:
  steps:
    - name: measure
      cli: {command: ["df", "-h"]}
    - name: tell
      notify: {sinks: [log]}
"""
# What the controller reported: every definition above is valid, and one it refused.
STATUSES = [
    ("Source", "am", True, "valid"),
    ("Sink", "log", True, "valid"),
    ("Workflow", "disk", True, "valid"),
    ("Workflow", "broken", False, "spec.steps[0].notify.sinks: Sink ops/nowhere is not defined"),
]
NOW = EPOCH + timedelta(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class Console:
    http: httpx.AsyncClient
    bus: RecordingPublisher
    store: Store

    async def sign_in(self, token: str = OPERATOR) -> None:
        answer = await self.http.post("/login", data={"token": token, "next": "/executions"})
        assert answer.status_code == 303, answer.text


@contextlib.asynccontextmanager
async def console(folder: Path, *, tokens: FixedTokens | None = TOKENS) -> AsyncIterator[Console]:
    async with sqlite_store(folder) as store:
        bus = RecordingPublisher()
        view = definitions_view(
            alertmanager_source("ops") + "---\n" + log_sink("ops", "log") + WORKFLOWS
        )
        report_statuses(view, "ops", STATUSES, at=EPOCH)
        ingest = fake_ingest(
            store,
            view,
            bus=bus,
            clock=FakeClock(NOW),
            trace_url="http://jaeger.local/trace/{trace_id}",
        )
        app = build_app(ingest, checks={}, tokens=tokens)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://vigil.local"
        ) as http:
            yield Console(http=http, bus=bus, store=store)


def finished_run(
    execution_id: str, *, at: timedelta, state: ExecutionState = "succeeded"
) -> Execution:
    return make_finished_run(execution_id, at=EPOCH + at, state=state)


def running(execution_id: str, *, at: timedelta) -> Execution:
    return make_execution(
        execution_id, at=EPOCH + at, namespace="ops", workflow="disk", state="running"
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page
    return found.group(1)
