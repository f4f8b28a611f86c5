"""The default report: what a reader sees with no template (the alert, the steps with
state and duration, the agent's findings, links), a notify step's own title and message
replacing the title and text, and each renderer's form (plain text, Slack mrkdwn and
Block Kit, Adaptive Card, HTML, JSON for the webhook) and the log sink's line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog.testing
from pydantic import ValidationError

from vigil.common.messages import Alert, Findings, NotifyStep, StepRequest, StepSummary
from vigil.common.testing import definitions_view
from vigil.sink.adapters.log import LogNotifier
from vigil.sink.notifiers import Notification
from vigil.sink.report import (
    ReportLinks,
    adaptive_card,
    block_kit,
    build_report,
    html,
    json_report,
    mrkdwn,
    plain_text,
    step_lines,
)
from vigil.sink.settings import SinkSettings

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
SINK = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: oncall, namespace: demo}
spec: {type: log}
"""
ALERT = Alert.model_validate(
    {
        "status": "firing",
        "fingerprint": "f1",
        "labels": {
            "alertname": "DiskFull",
            "severity": "critical",
            "pod": "db-0",
            "namespace": "shop",
            "team": "storage",
        },
        "annotations": {"summary": "db-0's disk is 97% full", "description": "long text"},
        "startsAt": "2026-11-24T08:00:00Z",
    }
)
DESCRIBE = StepSummary(
    name="describe",
    kind="cli",
    state="succeeded",
    attempt=1,
    started_at=T0,
    finished_at=T0 + timedelta(seconds=2),
)
INVESTIGATE = StepSummary(
    name="investigate",
    kind="agent",
    state="succeeded",
    attempt=1,
    started_at=T0 + timedelta(seconds=2),
    finished_at=T0 + timedelta(seconds=97),
    findings=Findings(
        summary="the disk holds old logs",
        root_cause="log rotation stopped",
        recommendations=["rotate the logs", "alert at 80%"],
        confidence=0.7,
    ),
)
FAILED = StepSummary(
    name="restart",
    kind="cli",
    state="failed",
    attempt=2,
    started_at=T0,
    finished_at=T0 + timedelta(seconds=1),
    error="exit code 1",
)
SKIPPED = StepSummary(name="page", kind="notify", state="skipped")
LINKS = ReportLinks(
    public_url="https://vigil.example.com/", trace_url="https://jaeger.example.com/trace/{trace_id}"
)


def as_json(value: object) -> Any:
    """What the receiver parses (and proof that the value is JSON)."""
    return json.loads(json.dumps(value))


def notification(
    *,
    steps: list[StepSummary],
    title: str = "DiskFull is firing",
    message: str = "db-0's disk is 97% full",
    custom_title: bool = False,
    custom_message: bool = False,
    trace_id: str | None = "4bf92f3577b34da6",
    alert: Alert = ALERT,
) -> Notification:
    definition = definitions_view(SINK).sink("demo", "oncall")
    assert definition is not None
    notify = NotifyStep(
        sinks=["oncall"],
        title=title,
        message=message,
        alert=alert,
        custom_title=custom_title,
        custom_message=custom_message,
        steps=steps,
        trace_id=trace_id,
    )
    request = StepRequest(
        execution_id="01JEXEC",
        namespace="demo",
        workflow="disk",
        step="report",
        attempt=1,
        idempotency_key="01JEXEC/report/1",
        notify=notify,
    )
    return Notification(
        sink=definition, request=request, notify=notify, idempotency_key="01JEXEC/report/1/oncall"
    )


def test_plain_text_report_without_findings_reads_well_and_has_no_links_when_unset() -> None:
    report = build_report(notification(steps=[DESCRIBE, FAILED, SKIPPED]), links=ReportLinks())

    assert plain_text(report) == (
        "DiskFull is firing (critical)\n"
        "db-0's disk is 97% full\n"
        "\n"
        "Status: firing\n"
        "Alert: DiskFull\n"
        "Severity: critical\n"
        "Labels: namespace=shop, pod=db-0, team=storage\n"
        "Workflow: demo/disk\n"
        "Execution: 01JEXEC\n"
        "\n"
        "Steps:\n"
        "  - describe (cli): succeeded in 2.0s\n"
        "  - restart (cli): failed in 1.0s: exit code 1\n"
        "  - page (notify): skipped\n"
    )


def test_plain_text_report_shows_the_findings_and_links_to_the_execution_and_trace() -> None:
    report = build_report(notification(steps=[DESCRIBE, INVESTIGATE]), links=LINKS)

    text = plain_text(report)

    assert "  - investigate (agent): succeeded in 1m 35s\n" in text
    assert (
        "Findings of investigate:\n"
        "  the disk holds old logs\n"
        "  Root cause: log rotation stopped\n"
        "  Recommendations:\n"
        "    - rotate the logs\n"
        "    - alert at 80%\n"
        "  Confidence: 70%\n"
    ) in text
    assert text.endswith(
        "Execution: https://vigil.example.com/api/v1/executions/01JEXEC\n"
        "Trace: https://jaeger.example.com/trace/4bf92f3577b34da6\n"
    )


def test_no_trace_link_without_a_trace_id() -> None:
    report = build_report(notification(steps=[], trace_id=None), links=LINKS)

    assert [link.label for link in report.links] == ["Execution"]


def test_a_notify_steps_own_title_and_message_replace_the_reports() -> None:
    note = notification(
        steps=[INVESTIGATE],
        title="db-0 needs you",
        message="see the findings",
        custom_title=True,
        custom_message=True,
    )

    report = build_report(note, links=LINKS)

    assert (report.title, report.text) == ("db-0 needs you", "see the findings")
    assert plain_text(report).startswith("db-0 needs you\nsee the findings\n")
    assert report.findings[0].summary == "the disk holds old logs", "the rest stays"


def test_only_the_message_overridden_keeps_the_default_title() -> None:
    note = notification(steps=[], message="custom words", custom_message=True)

    report = build_report(note, links=ReportLinks())

    assert (report.title, report.text) == ("DiskFull is firing (critical)", "custom words")


def test_an_alert_without_summary_uses_its_description_and_labels_are_capped() -> None:
    labels = {"alertname": "Many"} | {f"l{n:02d}": str(n) for n in range(12)}
    alert = Alert.model_validate(
        {
            "status": "resolved",
            "fingerprint": "f2",
            "labels": labels,
            "annotations": {"description": "described"},
            "startsAt": "2026-11-24T08:00:00Z",
        }
    )

    report = build_report(notification(steps=[], alert=alert), links=ReportLinks())

    assert (report.title, report.text, report.severity) == ("Many is resolved", "described", None)
    assert len(report.labels) == 8
    assert "Labels: l00=0, l01=1, l02=2, l03=3, l04=4, l05=5, l06=6, l07=7 (+4 more)" in (
        plain_text(report)
    )


def test_block_kit_has_a_header_the_steps_the_findings_and_link_buttons() -> None:
    report = build_report(notification(steps=[DESCRIBE, INVESTIGATE]), links=LINKS)

    blocks = as_json(block_kit(report))

    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "DiskFull is firing (critical)"},
    }
    kinds = [b["type"] for b in blocks if isinstance(b, dict)]
    assert kinds == [
        "header",
        "section",
        "section",
        "divider",
        "section",
        "divider",
        "section",
        "actions",
    ]
    texts = [b["text"]["text"] for b in blocks if isinstance(b, dict) and "text" in b]
    assert texts[2] == (
        "*Steps*\n"
        ":white_check_mark: *describe* (cli) succeeded in 2.0s\n"
        ":white_check_mark: *investigate* (agent) succeeded in 1m 35s"
    )
    assert texts[3].startswith("*Findings of investigate*\nthe disk holds old logs\n")
    assert "• rotate the logs" in texts[3]
    assert [e["url"] for e in blocks[-1]["elements"]] == [
        "https://vigil.example.com/api/v1/executions/01JEXEC",
        "https://jaeger.example.com/trace/4bf92f3577b34da6",
    ]


def test_slack_text_escapes_its_control_characters() -> None:
    note = notification(steps=[], message="a < b && c > d", custom_message=True)

    text = mrkdwn(build_report(note, links=ReportLinks()))

    assert "a &lt; b &amp;&amp; c &gt; d" in text
    assert "<" not in text.replace("&lt;", "")


def test_slack_sections_stay_within_slacks_limits() -> None:
    long = Findings(summary="x" * 5000)
    steps = [
        StepSummary(name=f"s{n}", kind="agent", state="succeeded", findings=long) for n in range(9)
    ]
    note = notification(steps=steps, title="t" * 400, custom_title=True)

    blocks = as_json(block_kit(build_report(note, links=ReportLinks())))

    assert len(blocks[0]["text"]["text"]) == 150
    sections = [b for b in blocks if isinstance(b, dict) and b["type"] == "section" and "text" in b]
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert sum(1 for s in sections if "Findings of" in str(s)) == 5, "the last five findings"


def test_adaptive_card_is_version_1_4_with_facts_steps_findings_and_open_url_actions() -> None:
    card = as_json(
        adaptive_card(build_report(notification(steps=[FAILED, INVESTIGATE]), links=LINKS))
    )

    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    body = card["body"]
    assert body[0] == {
        "type": "TextBlock",
        "text": "DiskFull is firing (critical)",
        "wrap": True,
        "size": "Medium",
        "weight": "Bolder",
        "color": "Attention",
    }
    fact_sets = [b["facts"] for b in body if isinstance(b, dict) and b["type"] == "FactSet"]
    assert {"title": "Severity", "value": "critical"} in fact_sets[0]
    assert fact_sets[1] == [
        {"title": "restart (cli)", "value": "failed in 1.0s: exit code 1"},
        {"title": "investigate (agent)", "value": "succeeded in 1m 35s"},
    ]
    texts = [b["text"] for b in body if isinstance(b, dict) and b["type"] == "TextBlock"]
    assert "**Root cause:** log rotation stopped" in texts
    assert "- rotate the logs\r- alert at 80%" in texts
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Execution",
            "url": "https://vigil.example.com/api/v1/executions/01JEXEC",
        },
        {
            "type": "Action.OpenUrl",
            "title": "Trace",
            "url": "https://jaeger.example.com/trace/4bf92f3577b34da6",
        },
    ]


def test_adaptive_card_without_links_has_no_actions() -> None:
    card = adaptive_card(build_report(notification(steps=[]), links=ReportLinks()))

    assert "actions" not in card


def test_html_escapes_every_value_and_links_out() -> None:
    note = notification(steps=[DESCRIBE], message="<script>x</script>", custom_message=True)

    page = html(build_report(note, links=LINKS))

    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<li><b>describe</b> (cli): succeeded in 2.0s</li>" in page
    assert '<a href="https://vigil.example.com/api/v1/executions/01JEXEC">Execution</a>' in page


def test_a_trace_url_setting_without_the_trace_id_field_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"VIGIL_TRACE_URL must contain `\{trace_id\}`"):
        SinkSettings(trace_url="https://jaeger.example.com/trace/")

    settings = SinkSettings(trace_url="https://jaeger.example.com/trace/{trace_id}")
    assert settings.trace_url == "https://jaeger.example.com/trace/{trace_id}"


def test_json_report_carries_the_steps_findings_and_links_as_data() -> None:
    report = build_report(notification(steps=[FAILED, INVESTIGATE]), links=LINKS)

    data = as_json(json_report(report))

    assert data["title"] == "DiskFull is firing (critical)"
    assert data["labels"] == {"namespace": "shop", "pod": "db-0", "team": "storage"}
    assert data["steps"][0] == {
        "name": "restart",
        "kind": "cli",
        "state": "failed",
        "duration": "1.0s",
        "error": "exit code 1",
    }
    (finding,) = data["findings"]
    assert finding["rootCause"] == "log rotation stopped"
    assert finding["confidence"] == 0.7
    assert [link["label"] for link in data["links"]] == ["Execution", "Trace"]


def test_step_lines_are_one_per_step_for_the_log_sink() -> None:
    report = build_report(notification(steps=[DESCRIBE, FAILED, SKIPPED]), links=ReportLinks())

    assert step_lines(report) == [
        "describe (cli): succeeded in 2.0s",
        "restart (cli): failed in 1.0s: exit code 1",
        "page (notify): skipped",
    ]


async def test_the_log_sink_writes_the_report_as_one_structured_line() -> None:
    with structlog.testing.capture_logs() as logs:
        await LogNotifier(links=LINKS).send(notification(steps=[DESCRIBE, INVESTIGATE]))

    (line,) = [entry for entry in logs if entry["event"] == "notification"]
    assert line["title"] == "DiskFull is firing (critical)"
    assert line["message"] == "db-0's disk is 97% full"
    assert line["steps"] == [
        "describe (cli): succeeded in 2.0s",
        "investigate (agent): succeeded in 1m 35s",
    ]
    assert line["findings"] == ["the disk holds old logs"]
    assert line["links"] == {
        "execution": "https://vigil.example.com/api/v1/executions/01JEXEC",
        "trace": "https://jaeger.example.com/trace/4bf92f3577b34da6",
    }
    assert line["idempotency_key"] == "01JEXEC/report/1/oncall"
