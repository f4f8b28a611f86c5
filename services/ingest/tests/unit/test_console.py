"""The console's pages through the real ASGI app with the shipped fakes
(`tests.support.console`): what each page shows of the stored documents, its filters,
searches and paging, and that what it shows of labels is escaped."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import get_args

from tests.support.console import (
    NOW,
    READER,
    console,
    finished_run,
    running,
)
from tests.support.documents import make_artifact, make_execution, make_occurrence
from vigil.common.bus import ConsumerStats
from vigil.common.documents import DeliveryRecord, StepRecord
from vigil.common.messages import Output
from vigil.common.testing import EPOCH
from vigil.ingest.api import Since
from vigil.ingest.console import present
from vigil.ingest.console.pages import SINCE

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
