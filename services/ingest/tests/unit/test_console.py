"""The console's pages through the real ASGI app with the shipped fakes: signing in with a
token into a cookie, what each page shows of the stored documents, and that an action
(cancel, re-run) asks first, needs scope operate and a form from the console itself, and
publishes what the API would."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import get_args
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.definitions import alertmanager_source, log_sink
from tests.support.documents import (
    make_artifact,
    make_execution,
    make_finished_run,
    make_occurrence,
)
from tests.support.ingest import fake_ingest, report_statuses
from vigil.common.bus import ConsumerStats
from vigil.common.documents import DeliveryRecord, Execution, StepRecord
from vigil.common.messages import CancelRequested, ExecutionState, Output, RunRequested
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import CONSOLE_COOKIE, FixedTokens, csrf_token, parse_tokens
from vigil.ingest.api import Since, build_app
from vigil.ingest.console import present
from vigil.ingest.console.pages import SINCE

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


# --- signing in ------------------------------------------------------------------------


async def test_a_page_without_a_token_sends_the_browser_to_sign_in_and_back(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        asked = await ui.http.get("/executions?state=running")
        assert asked.status_code == 303
        location = urlsplit(asked.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": ["/executions?state=running"]}

        form = await ui.http.get(asked.headers["location"])
        assert form.status_code == 200
        assert 'value="/executions?state=running"' in form.text
        assert '<label for="token">API token</label>' in form.text

        signed = await ui.http.post(
            "/login", data={"token": READER, "next": "/executions?state=running"}
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/executions?state=running"
        cookie = signed.headers["set-cookie"].lower()
        assert f"{CONSOLE_COOKIE}=" in cookie
        assert f'{CONSOLE_COOKIE}="' not in cookie  # a value that needs no quoting
        assert "httponly" in cookie
        assert "samesite=strict" in cookie

        page = await ui.http.get("/executions?state=running")
        assert page.status_code == 200
        assert "<h1>Executions</h1>" in page.text


async def test_a_wrong_token_is_refused_on_the_sign_in_page_and_sets_no_cookie(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        refused = await ui.http.post("/login", data={"token": "guess-0123456789", "next": "/"})
        assert refused.status_code == 401
        assert "That token is not valid" in refused.text
        assert "set-cookie" not in refused.headers
        empty = await ui.http.post("/login", data={"token": "", "next": "/"})
        assert empty.status_code == 401
        assert "Paste an API token" in empty.text
        assert (await ui.http.get("/executions")).status_code == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "", "executions"]
)
async def test_sign_in_only_goes_back_to_a_path_of_this_console(
    tmp_path: Path, target: str
) -> None:
    async with console(tmp_path) as ui:
        signed = await ui.http.post("/login", data={"token": OPERATOR, "next": target})
        assert signed.headers["location"] == "/executions"


async def test_the_cookie_opens_the_console_but_not_the_api(tmp_path: Path) -> None:
    """A script uses a bearer header; the cookie counts for pages only."""
    async with console(tmp_path) as ui:
        await ui.sign_in()
        assert (await ui.http.get("/executions")).status_code == 200
        api = await ui.http.get("/api/v1/executions")
        assert api.status_code == 401


async def test_signing_out_forgets_the_cookie(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.sign_in()
        page = await ui.http.get("/executions")
        out = await ui.http.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (await ui.http.get("/executions")).status_code == 303


async def test_without_auth_the_console_is_open_and_has_no_sign_in(tmp_path: Path) -> None:
    async with console(tmp_path, tokens=None) as ui:
        assert (await ui.http.get("/executions")).status_code == 200
        login = await ui.http.get("/login")
        assert login.status_code == 303
        assert login.headers["location"] == "/executions"


# --- executions ------------------------------------------------------------------------


async def test_the_executions_page_lists_newest_first_with_state_labels_and_duration(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01AOLD", at=timedelta(minutes=1)))
        await ui.store.insert_execution(running("01BNEW", at=timedelta(minutes=5)))
        await ui.sign_in(READER)

        page = await ui.http.get("/executions")

        assert page.status_code == 200
        rows = re.findall(r'<tr id="execution-(\w+)" data-state="(\w+)">', page.text)
        assert rows == [("01BNEW", "running"), ("01AOLD", "succeeded")]
        assert '<a href="/executions/01AOLD">ops/disk</a>' in page.text
        assert "<strong>KubePodCrashLooping</strong>" in page.text
        assert "4.0 s" in page.text  # the finished one: created → finished
        assert "5 m 00 s" in page.text  # the running one: created → now
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_the_executions_page_filters_by_state_and_names_an_unknown_one(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01DONE", at=timedelta(minutes=1)))
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=2)))
        await ui.sign_in(READER)

        page = await ui.http.get("/executions", params={"state": "running"})
        assert "execution-01BUSY" in page.text
        assert "execution-01DONE" not in page.text
        assert '<option value="running" selected>' in page.text

        wrong = await ui.http.get("/executions", params={"state": "exploded"})
        assert wrong.status_code == 400
        assert "state &#39;exploded&#39; is not one of pending, running" in wrong.text


async def test_the_executions_page_pages_with_a_cursor(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        for n in range(55):
            await ui.store.insert_execution(running(f"01E{n:03d}", at=timedelta(seconds=n)))
        await ui.sign_in(READER)

        first = await ui.http.get("/executions", params={"state": "running"})
        assert first.text.count('<tr id="execution-') == 50
        older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert older is not None
        second = await ui.http.get(older.group(1).replace("&amp;", "&"))
        ids = re.findall(r'<tr id="execution-(\w+)"', second.text)
        assert ids == [f"01E{n:03d}" for n in range(4, -1, -1)]
        assert 'rel="next"' not in second.text


async def test_an_execution_page_shows_its_timeline_output_deliveries_and_trace(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01RUN", at=timedelta(minutes=1)))
        await ui.store.record_delivery(
            DeliveryRecord(
                id="d-1",
                idempotency_key="01RUN/tell/1",
                execution_id="01RUN",
                step="tell",
                sink="log",
                sink_type="log",
                attempt=1,
                status="delivered",
                at=EPOCH + timedelta(minutes=1, seconds=4),
            )
        )
        await ui.sign_in(READER)

        page = await ui.http.get("/executions/01RUN")

        assert page.status_code == 200
        text = page.text
        # The cli step ran from 1 s to 3 s of a 4 s execution: 25% in, 50% wide.
        assert 'x="25.0" y="0" width="50.0"' in text
        assert 'aria-label="measure: succeeded, attempt 2, 2.0 s"' in text
        assert 'x="75.0" y="0" width="25.0"' in text
        assert "/dev/sda1  93%  /var &lt;lib&gt;" in text  # escaped, never markup
        assert '<a href="/artifacts/01RUN/measure/2/output">full output</a>' in text
        assert "df -h &#39;/var/lib data&#39;</pre>" in text  # the command as run, quoted
        assert "<strong>Disk 93% full on db-1</strong>" in text
        assert "df says /var is at 93%</pre>" in text
        assert '"deliveries"' not in text  # the table says it, not the raw output
        assert '<span class="badge delivery-delivered">delivered</span>' in text
        assert 'href="http://jaeger.local/trace/4bf92f3577b34da6a3ce929d0e0e4736"' in text
        assert 'href="/alerts/ops/am/fp-1"' in text
        # A reader sees no buttons, and why.
        assert "Cancel…" not in text
        assert "Your token has scope <code>read</code>" in text


async def test_an_agent_step_shows_its_finding_with_evidence_linked_to_tool_calls(
    tmp_path: Path,
) -> None:
    finding: Output = {
        "summary": "The disk filled with old logs.",
        "rootCause": "logrotate stopped on 11-20",
        "confidence": "high",
        "evidence": [{"claim": "/var/log is 41 GB", "toolCall": "c1"}],
        "recommendations": ["restart logrotate"],
        "toolCalls": [{"id": "c1", "tool": "kubectl_get", "arguments": {"kind": "pod"}}],
        "transcriptId": "01AGENT/look/1/transcript",
    }
    base = make_execution("01AGENT", at=EPOCH, namespace="ops", workflow="disk")
    execution = base.model_copy(
        update={
            "steps": [
                StepRecord(
                    name="look",
                    kind="agent",
                    state="succeeded",
                    attempt=1,
                    started_at=EPOCH,
                    finished_at=EPOCH + timedelta(seconds=30),
                    output=finding,
                )
            ]
        }
    )
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(execution)
        await ui.sign_in(READER)
        text = (await ui.http.get("/executions/01AGENT")).text
    assert "The disk filled with old logs." in text
    assert "logrotate stopped on 11-20" in text
    assert '<a href="#call-look-c1">tool call c1</a>' in text
    assert '<li id="call-look-c1"><code>kubectl_get</code>' in text
    assert '<a href="/artifacts/01AGENT/look/1/transcript">Transcript</a>' in text


async def test_an_unknown_execution_is_a_404_page_and_a_requested_one_waits(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.sign_in(READER)
        missing = await ui.http.get("/executions/01NOPE")
        assert missing.status_code == 404
        assert "No execution 01NOPE." in missing.text
        waiting = await ui.http.get("/executions/01NOPE", params={"requested": "1"})
        assert waiting.status_code == 200
        assert '<meta http-equiv="refresh" content="2">' in waiting.text


async def test_an_artifact_is_shown_as_text(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.put_artifact(make_artifact("ex-1/out", at=EPOCH, content="<b>all</b>"))
        await ui.sign_in(READER)
        page = await ui.http.get("/artifacts/ex-1/out")
    assert page.status_code == 200
    assert "&lt;b&gt;all&lt;/b&gt;" in page.text


# --- cancel and re-run -----------------------------------------------------------------


async def test_cancel_asks_first_then_publishes_the_request_and_comes_back(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)
        page = await ui.http.get("/executions/01BUSY")
        assert '<a class="button danger" href="/executions/01BUSY/cancel">Cancel…</a>' in page.text

        confirm = await ui.http.get("/executions/01BUSY/cancel")
        assert confirm.status_code == 200
        assert 'action="/executions/01BUSY/cancel"' in confirm.text
        assert ui.bus.published == []

        done = await ui.http.post(
            "/executions/01BUSY/cancel",
            data={"csrf": csrf_of(confirm.text), "reason": "wrong pod"},
        )
        assert done.status_code == 303
        assert done.headers["location"].startswith("/executions/01BUSY?notice=")
        [request] = ui.bus.messages(CancelRequested)
        assert (request.execution_id, request.reason) == ("01BUSY", "wrong pod")
        assert ui.bus.published[0].msg_id == "cancel/01BUSY"
        back = await ui.http.get(done.headers["location"])
        assert "Cancellation requested." in back.text


async def test_a_form_without_the_consoles_csrf_token_or_from_another_origin_is_refused(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)

        forged = await ui.http.post("/executions/01BUSY/cancel", data={"reason": "x"})
        assert forged.status_code == 403
        assert "stale or was not posted from this console" in forged.text
        guessed = await ui.http.post("/executions/01BUSY/cancel", data={"csrf": csrf_token(READER)})
        assert guessed.status_code == 403
        elsewhere = await ui.http.post(
            "/executions/01BUSY/cancel",
            data={"csrf": csrf_token(OPERATOR)},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        assert "posted from https://evil.example" in elsewhere.text
        assert ui.bus.published == []


async def test_a_reader_may_not_cancel_even_with_a_good_form(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(READER)
        confirm = await ui.http.get("/executions/01BUSY/cancel")
        assert confirm.status_code == 403
        refused = await ui.http.post("/executions/01BUSY/cancel", data={"csrf": csrf_token(READER)})
        assert refused.status_code == 403
        assert ui.bus.published == []


async def test_a_finished_execution_cannot_be_cancelled(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01DONE", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)
        page = await ui.http.get("/executions/01DONE")
        assert "Cancel…" not in page.text
        assert (await ui.http.get("/executions/01DONE/cancel")).status_code == 409
        late = await ui.http.post("/executions/01DONE/cancel", data={"csrf": csrf_of(page.text)})
        assert late.status_code == 409
        assert "already finished (succeeded)" in late.text
        assert ui.bus.published == []


async def test_rerun_starts_the_same_workflow_with_the_same_alert(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        original = finished_run("01DONE", at=timedelta(minutes=1), state="failed")
        await ui.store.insert_execution(original)
        await ui.sign_in(OPERATOR)
        confirm = await ui.http.get("/executions/01DONE/rerun")
        assert "Start a new execution" in confirm.text

        started = await ui.http.post(
            "/executions/01DONE/rerun", data={"csrf": csrf_of(confirm.text)}
        )

        assert started.status_code == 303
        [request] = ui.bus.messages(RunRequested)
        assert (request.namespace, request.workflow) == ("ops", "disk")
        assert request.alert == original.alert
        assert started.headers["location"] == f"/executions/{request.execution_id}?requested=1"


# --- alerts and definitions -------------------------------------------------------------


async def test_the_alerts_page_finds_alerts_by_matcher_and_names_a_bad_one(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.record_alert(
            make_occurrence(
                at=EPOCH,
                fingerprint="fp-db",
                namespace="ops",
                labels={"alertname": "DiskFull", "team": "db", "severity": "critical"},
            )
        )
        await ui.store.record_alert(
            make_occurrence(
                at=EPOCH,
                fingerprint="fp-web",
                namespace="ops",
                labels={"alertname": "HighLatency", "team": "web"},
            )
        )
        await ui.sign_in(READER)

        found = await ui.http.get("/alerts", params={"match": 'team="db"'})
        assert found.status_code == 200
        assert "<strong>DiskFull</strong>" in found.text
        assert "HighLatency" not in found.text
        assert 'href="/alerts/ops/alertmanager/fp-db"' in found.text

        bad = await ui.http.get("/alerts", params={"match": "team=~("})
        assert bad.status_code == 400
        assert "match:" in bad.text

        one = await ui.http.get("/alerts/ops/alertmanager/fp-db")
        assert one.status_code == 200
        assert "severity</span>=critical" in one.text
        assert "Lifecycle" in one.text


async def test_the_definitions_page_shows_validity_webhook_urls_and_success_rates(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01OK", at=timedelta(minutes=1)))
        failed = finished_run("01BAD", at=timedelta(minutes=2), state="failed")
        await ui.store.insert_execution(failed.model_copy(update={"trigger_key": "t-bad"}))
        await ui.sign_in(READER)

        page = await ui.http.get("/definitions")

    assert page.status_code == 200
    assert '<code class="copy">http://vigil.local/hooks/ops/am</code>' in page.text
    assert "1 of 2 (50%)" in page.text
    sinks = page.text[page.text.index("<td>ops/log</td>") :]
    assert "log" in sinks[: sinks.index("</tr>")].split("</td>")[2]  # its type
    broken = page.text[page.text.index("<td>ops/broken</td>") :]
    assert '<span class="badge state-failed">invalid</span>' in broken[:200]
    assert "nowhere" in broken[:1000]


async def test_labels_from_a_webhook_are_escaped_on_every_page(tmp_path: Path) -> None:
    hostile = make_execution("01XSS", at=EPOCH, namespace="ops", workflow="disk")
    alert = hostile.alert.model_copy(
        update={"labels": {"alertname": "<script>alert(1)</script>", "pod": '"><img src=x>'}}
    )
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(hostile.model_copy(update={"alert": alert}))
        await ui.sign_in(READER)
        for path in ("/executions", "/executions/01XSS"):
            text = (await ui.http.get(path)).text
            assert "<script>alert(1)</script>" not in text, path
            assert "&lt;script&gt;" in text, path
            assert '"><img' not in text, path


# --- overview --------------------------------------------------------------------------


def delivery(execution_id: str, attempt: int, status: str, *, sink: str = "log") -> DeliveryRecord:
    return DeliveryRecord(
        id=f"{execution_id}/{sink}/{attempt}",
        idempotency_key=f"{execution_id}/tell/1/{sink}",
        execution_id=execution_id,
        step="tell",
        sink=sink,
        sink_type="webhook",
        attempt=attempt,
        status=status,  # type: ignore[arg-type]
        detail=None if status == "delivered" else "connection refused",
        at=NOW - timedelta(seconds=60 - attempt),
    )


async def test_the_overview_shows_the_last_hour_the_lag_and_the_failing_deliveries(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        # NOW is 10 minutes after EPOCH: two started 2 minutes ago, one 90 minutes ago.
        await ui.store.insert_execution(running("01ABUSY", at=timedelta(minutes=8)))
        await ui.store.insert_execution(
            finished_run("01BDONE", at=timedelta(minutes=8), state="failed").model_copy(
                update={"trigger_key": "t-done"}
            )
        )
        await ui.store.insert_execution(running("00OLD", at=timedelta(minutes=-80)))
        for record in (
            delivery("01ABUSY", 1, "retrying"),
            delivery("01ABUSY", 2, "retrying"),  # the latest attempt counts, once
            delivery("01BDONE", 1, "failed", sink="pager"),
            delivery("01BDONE", 1, "delivered"),
        ):
            await ui.store.record_delivery(record)
        ui.bus.stats[("ALERTS", "engine")] = ConsumerStats(
            stream="ALERTS", consumer="engine", stream_messages=40, pending=7, in_flight=3
        )
        await ui.sign_in(READER)

        page = await ui.http.get("/")

    assert page.status_code == 200
    text = page.text
    assert '<a href="/" aria-current="page">Overview</a>' in text
    assert re.search(r'state=running">running</a>.*?<span class="count">2</span>', text, re.S)
    assert re.search(r'state=failed">failed</a>.*?<span class="count">1</span>', text, re.S)
    assert "<title>00:08 UTC: 2</title>" in text  # both started at 00:08; NOW is 00:10
    assert "2 executions started in the last 60 minutes" in text
    assert "<td>ALERTS</td><td>engine</td><td>10</td><td>7</td><td>3</td>" in text
    failing = text[text.index('id="failing"') :]
    assert failing.count("<tr>") == 3  # the header, and two deliveries
    assert '<span class="badge delivery-retrying">retrying</span>' in failing
    assert "<td>2</td>" in failing  # the retry's latest attempt
    assert "pager" in failing
    assert "delivery-delivered" not in failing


def test_per_minute_counts_the_last_hour_oldest_first() -> None:
    now = EPOCH.replace(hour=10, minute=30, second=15)
    moments = [
        now,
        now - timedelta(seconds=20),  # 10:29:55, the minute before
        now - timedelta(minutes=59, seconds=15),  # 09:31:00, the first minute shown
        now - timedelta(minutes=60, seconds=16),  # 09:29:59: too old
    ]
    columns = present.per_minute(moments, now)
    assert len(columns) == 60
    assert (columns[0].minute.strftime("%H:%M"), columns[0].count) == ("09:31", 1)
    assert [c.count for c in columns[-2:]] == [1, 1]
    assert sum(c.count for c in columns) == 3
    assert {c.height for c in columns} == {0.0, 100.0}


async def test_executions_are_searched_by_label_text_and_time_range(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        for n, (minutes, pod) in enumerate([(1, "db-1"), (5, "web-1"), (8, "DB-2"), (9, "db-3")]):
            made = running(f"01E{n}", at=timedelta(minutes=minutes))
            alert = made.alert.model_copy(update={"labels": {"alertname": "Disk", "pod": pod}})
            await ui.store.insert_execution(made.model_copy(update={"alert": alert}))
        await ui.sign_in(READER)

        found = await ui.http.get("/executions", params={"q": "db-"})
        recent = await ui.http.get("/executions", params={"q": "pod=db", "since": "15m"})
        wrong = await ui.http.get("/executions", params={"since": "1y"})

    ids = re.findall(r'<tr id="execution-(\w+)"', found.text)
    assert ids == ["01E3", "01E2", "01E0"]  # any case, newest first; web-1 is not
    assert 'value="db-"' in found.text
    # NOW is 00:10: 15 minutes back reaches every one; the text narrows it.
    assert re.findall(r'<tr id="execution-(\w+)"', recent.text) == ["01E3", "01E2", "01E0"]
    assert wrong.status_code == 400
    assert "since &#39;1y&#39; is not one of 15m, 1h" in wrong.text


async def test_a_search_page_reads_on_from_where_it_stopped(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        for n in range(130):
            made = running(f"01E{n:03d}", at=timedelta(seconds=n))
            pod = "db" if n % 2 else "web"
            alert = made.alert.model_copy(update={"labels": {"alertname": "Disk", "pod": pod}})
            await ui.store.insert_execution(made.model_copy(update={"alert": alert}))
        await ui.sign_in(READER)

        first = await ui.http.get("/executions", params={"q": "pod=db"})
        older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert older is not None
        second = await ui.http.get(older.group(1).replace("&amp;", "&"))

    assert first.text.count('<tr id="execution-') == 50
    seen = re.findall(r'<tr id="execution-(\w+)"', first.text + second.text)
    assert seen == [f"01E{n:03d}" for n in range(129, -1, -2)]  # all 65, each once
    assert 'rel="next"' not in second.text


async def test_the_time_range_leaves_out_what_started_before_it(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("00OLD", at=timedelta(minutes=-60)))
        await ui.store.insert_execution(running("01NEW", at=timedelta(minutes=9)))
        await ui.sign_in(READER)
        recent = await ui.http.get("/executions", params={"since": "15m"})
        day = await ui.http.get("/executions", params={"since": "24h"})
    assert re.findall(r'<tr id="execution-(\w+)"', recent.text) == ["01NEW"]
    assert 'rel="next"' not in recent.text
    assert re.findall(r'<tr id="execution-(\w+)"', day.text) == ["01NEW", "00OLD"]


async def test_the_api_searches_executions_as_the_console_does(tmp_path: Path) -> None:
    assert set(get_args(Since)) == set(SINCE), "the API's choices are the console's"
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("00OLD", at=timedelta(minutes=-60)))
        await ui.store.insert_execution(running("01NEW", at=timedelta(minutes=9)))
        headers = {"Authorization": f"Bearer {READER}"}
        found = await ui.http.get(
            "/api/v1/executions", params={"q": "POD=API", "since": "15m"}, headers=headers
        )
        wrong = await ui.http.get("/api/v1/executions", params={"since": "1y"}, headers=headers)
    assert [e["id"] for e in found.json()["items"]] == ["01NEW"]
    assert wrong.status_code == 422
    assert "query parameter since" in wrong.json()["error"]


async def test_an_alert_whose_fingerprint_holds_url_characters_links_to_itself(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.record_alert(
            make_occurrence(at=EPOCH, fingerprint="a?b#c d", namespace="ops", labels={"x": "y"})
        )
        await ui.sign_in(READER)
        listed = await ui.http.get("/alerts")
        link = re.search(r'<a href="(/alerts/ops/alertmanager/[^"]+)">', listed.text)
        assert link is not None
        assert link.group(1) == "/alerts/ops/alertmanager/a%3Fb%23c%20d"
        one = await ui.http.get(link.group(1))
    assert one.status_code == 200
    assert "<code>a?b#c d</code>" in one.text


async def test_a_token_with_cookie_syntax_in_it_still_signs_in(tmp_path: Path) -> None:
    """A tokens file may hold any non-blank characters; the cookie carries them encoded."""
    odd = 'semi;colon "quoted" =equal, comma ünï'.replace(" ", "_")
    async with console(
        tmp_path, tokens=FixedTokens(parse_tokens(f"{odd} read\n", origin="t"))
    ) as ui:
        await ui.sign_in(odd)
        assert (await ui.http.get("/executions")).status_code == 200
        ui.http.cookies.clear()
        ui.http.cookies.set(CONSOLE_COOKIE, "not*base64")
        assert (await ui.http.get("/executions")).status_code == 303
