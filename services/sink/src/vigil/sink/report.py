"""The default report of a notification: what happened, readable without any template.

`build_report` reads the notify message once into a `Report` (the alert, the steps of the
execution so far with their state and duration, the agent's findings, links back to the
execution and its trace); renderers turn it into what each receiver reads: `plain_text`
(email, PagerDuty's details), `mrkdwn` (Slack), `block_kit` (Slack), `adaptive_card`
(Teams), `html` (email), `json_report` (the webhook body's `report`), `step_lines` (the log
sink). A notify
step's own `title`/`message` replace the report's title and text; the rest stays.

The links come from the sink's settings (`ReportLinks`): the API's public URL and a trace
URL template; each link is left out when its setting is not given. The notifiers in
`adapters/` call this module; it does no I/O.
"""

from __future__ import annotations

import html as html_text
from dataclasses import dataclass

from pydantic import JsonValue

from vigil.common.messages import StepSummary
from vigil.sink.notifiers import Notification

# Labels that say where an alert is, shown first; alertname and severity have their own
# place in the report.
KEY_LABELS = (
    "namespace",
    "service",
    "job",
    "pod",
    "container",
    "deployment",
    "instance",
    "node",
    "cluster",
)
SHOWN_LABELS = 8
SHOWN_FINDINGS = 5
TRACE_ID_FIELD = "{trace_id}"
# Slack's limits (Block Kit reference): a header's text, a section's text, a message.
SLACK_HEADER_LIMIT = 150
SLACK_SECTION_LIMIT = 3000
STATE_MARKS = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "timed_out": ":hourglass:",
    "cancelled": ":no_entry_sign:",
    "skipped": ":fast_forward:",
    "running": ":arrows_counterclockwise:",
}

type Json = dict[str, JsonValue]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLinks:
    """Where the report may link to: the API as users reach it, and traces."""

    public_url: str | None = None  # e.g. https://vigil.example.com
    trace_url: str | None = None  # a template with `{trace_id}`

    def execution(self, execution_id: str) -> str | None:
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/api/v1/executions/{execution_id}"

    def trace(self, trace_id: str | None) -> str | None:
        if not self.trace_url or not trace_id:
            return None
        return self.trace_url.replace(TRACE_ID_FIELD, trace_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepLine:
    name: str
    kind: str
    state: str
    duration: str | None  # "2.0s", "3m 05s"; None when the step did not run
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    step: str
    summary: str
    root_cause: str
    recommendations: tuple[str, ...]
    confidence: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    title: str
    text: str
    status: str  # firing | resolved
    alert_name: str
    severity: str | None
    labels: tuple[tuple[str, str], ...]  # the key labels, at most SHOWN_LABELS
    hidden_labels: int  # how many more the alert has
    workflow: str  # namespace/name
    execution_id: str
    steps: tuple[StepLine, ...]
    findings: tuple[Finding, ...]
    links: tuple[Link, ...]


def duration_text(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _key_labels(labels: dict[str, str]) -> list[tuple[str, str]]:
    others = sorted(k for k in labels if k not in KEY_LABELS and k not in ("alertname", "severity"))
    ordered = [k for k in KEY_LABELS if k in labels] + others
    return [(k, labels[k]) for k in ordered]


def _step_line(step: StepSummary) -> StepLine:
    return StepLine(
        name=step.name,
        kind=step.kind,
        state=step.state,
        duration=duration_text(step.duration_seconds),
        error=step.error,
    )


def _findings(steps: list[StepSummary]) -> tuple[Finding, ...]:
    found = [
        Finding(
            step=step.name,
            summary=step.findings.summary,
            root_cause=step.findings.root_cause,
            recommendations=tuple(step.findings.recommendations),
            confidence=step.findings.confidence,
        )
        for step in steps
        if step.findings is not None
    ]
    return tuple(found[-SHOWN_FINDINGS:])


def build_report(notification: Notification, *, links: ReportLinks) -> Report:
    request, notify = notification.request, notification.notify
    alert = notify.alert
    name = alert.labels.get("alertname", "alert")
    severity = alert.labels.get("severity")
    title = f"{name} is {alert.status}" + (f" ({severity})" if severity else "")
    text = alert.annotations.get("summary") or alert.annotations.get("description", "")
    labels = _key_labels(alert.labels)
    targets = [
        ("Execution", links.execution(request.execution_id)),
        ("Trace", links.trace(notify.trace_id)),
    ]
    return Report(
        title=notify.title if notify.custom_title else title,
        text=notify.message if notify.custom_message else text,
        status=alert.status,
        alert_name=name,
        severity=severity,
        labels=tuple(labels[:SHOWN_LABELS]),
        hidden_labels=max(0, len(labels) - SHOWN_LABELS),
        workflow=f"{request.namespace}/{request.workflow}",
        execution_id=request.execution_id,
        steps=tuple(_step_line(step) for step in notify.steps),
        findings=_findings(notify.steps),
        links=tuple(Link(label=label, url=url) for label, url in targets if url),
    )


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _step_words(step: StepLine) -> str:
    words = step.state.replace("_", " ")
    if step.duration:
        words += f" in {step.duration}"
    if step.error:
        words += f": {step.error}"
    return words


def _labels_words(report: Report) -> str:
    words = ", ".join(f"{k}={v}" for k, v in report.labels)
    return words + (f" (+{report.hidden_labels} more)" if report.hidden_labels else "")


def _facts(report: Report) -> list[tuple[str, str]]:
    facts = [("Status", report.status), ("Alert", report.alert_name)]
    if report.severity:
        facts.append(("Severity", report.severity))
    if report.labels:
        facts.append(("Labels", _labels_words(report)))
    facts.append(("Workflow", report.workflow))
    facts.append(("Execution", report.execution_id))
    return facts


def _confidence(finding: Finding) -> str | None:
    return None if finding.confidence is None else f"{finding.confidence:.0%}"


# --- plain text ---------------------------------------------------------------------------


def plain_text(report: Report) -> str:
    lines = [report.title]
    if report.text:
        lines.append(report.text)
    lines.append("")
    lines += [f"{label}: {value}" for label, value in _facts(report)]
    if report.steps:
        lines += ["", "Steps:"]
        lines += [f"  - {s.name} ({s.kind}): {_step_words(s)}" for s in report.steps]
    for finding in report.findings:
        lines += ["", f"Findings of {finding.step}:", f"  {finding.summary}"]
        if finding.root_cause:
            lines.append(f"  Root cause: {finding.root_cause}")
        if finding.recommendations:
            lines.append("  Recommendations:")
            lines += [f"    - {item}" for item in finding.recommendations]
        if (confidence := _confidence(finding)) is not None:
            lines.append(f"  Confidence: {confidence}")
    if report.links:
        lines.append("")
        lines += [f"{link.label}: {link.url}" for link in report.links]
    return "\n".join(lines) + "\n"


def step_lines(report: Report) -> list[str]:
    """One line per step, `name (kind): state in 1.0s`, for a log line."""
    return [f"{s.name} ({s.kind}): {_step_words(s)}" for s in report.steps]


# --- JSON (webhook) -----------------------------------------------------------------------


def json_report(report: Report) -> Json:
    """The report as data, for a receiver that renders it itself (camelCase keys)."""
    return {
        "title": report.title,
        "text": report.text,
        "status": report.status,
        "alertName": report.alert_name,
        "severity": report.severity,
        "labels": dict(report.labels),
        "workflow": report.workflow,
        "executionId": report.execution_id,
        "steps": [
            {
                "name": s.name,
                "kind": s.kind,
                "state": s.state,
                "duration": s.duration,
                "error": s.error,
            }
            for s in report.steps
        ],
        "findings": [
            {
                "step": f.step,
                "summary": f.summary,
                "rootCause": f.root_cause,
                "recommendations": list(f.recommendations),
                "confidence": f.confidence,
            }
            for f in report.findings
        ],
        "links": [{"label": link.label, "url": link.url} for link in report.links],
    }


# --- Slack mrkdwn and Block Kit -----------------------------------------------------------


def slack_escaped(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask (mrkdwn and plain text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_steps(report: Report) -> str:
    return "\n".join(
        f"{STATE_MARKS.get(s.state, ':grey_question:')} *{slack_escaped(s.name)}* "
        f"({s.kind}) {slack_escaped(_step_words(s))}"
        for s in report.steps
    )


def _slack_finding(finding: Finding) -> str:
    lines = [f"*Findings of {slack_escaped(finding.step)}*", slack_escaped(finding.summary)]
    if finding.root_cause:
        lines.append(f"*Root cause:* {slack_escaped(finding.root_cause)}")
    if finding.recommendations:
        lines.append("*Recommendations:*")
        lines += [f"• {slack_escaped(item)}" for item in finding.recommendations]
    if (confidence := _confidence(finding)) is not None:
        lines.append(f"_Confidence: {confidence}_")
    return "\n".join(lines)


def _slack_link(link: Link) -> str:
    return f"<{link.url}|{link.label}>"


def mrkdwn(report: Report) -> str:
    """The report as one Slack mrkdwn text (a message's `text`, the fallback of blocks)."""
    parts = [f"*{slack_escaped(report.title)}*"]
    if report.text:
        parts.append(slack_escaped(report.text))
    parts.append("\n".join(f"*{k}:* {slack_escaped(v)}" for k, v in _facts(report)))
    if report.steps:
        parts.append("*Steps*\n" + _slack_steps(report))
    parts += [_slack_finding(f) for f in report.findings]
    if report.links:
        parts.append(" · ".join(_slack_link(link) for link in report.links))
    return "\n\n".join(parts)


def _section(text: str) -> Json:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clipped(text, SLACK_SECTION_LIMIT)},
    }


def block_kit(report: Report) -> list[JsonValue]:
    """The report as Slack blocks: header, text, facts, steps, findings, link buttons."""
    blocks: list[JsonValue] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clipped(report.title, SLACK_HEADER_LIMIT)},
        }
    ]
    if report.text:
        blocks.append(_section(slack_escaped(report.text)))
    fields: list[JsonValue] = [
        {"type": "mrkdwn", "text": _clipped(f"*{k}*\n{slack_escaped(v)}", 2000)}
        for k, v in _facts(report)
    ]
    blocks.append({"type": "section", "fields": fields})
    if report.steps:
        blocks += [{"type": "divider"}, _section("*Steps*\n" + _slack_steps(report))]
    for finding in report.findings:
        blocks += [{"type": "divider"}, _section(_slack_finding(finding))]
    if report.links:
        buttons: list[JsonValue] = [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": link.label},
                "url": link.url,
            }
            for link in report.links
        ]
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


# --- Adaptive Card (Teams) ----------------------------------------------------------------


def _text_block(text: str, **style: JsonValue) -> Json:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _fact_set(facts: list[tuple[str, str]]) -> Json:
    return {
        "type": "FactSet",
        "facts": [{"title": title, "value": value} for title, value in facts],
    }


def _card_finding(finding: Finding) -> list[JsonValue]:
    items: list[JsonValue] = [
        _text_block(f"Findings of {finding.step}", weight="Bolder", separator=True),
        _text_block(finding.summary),
    ]
    if finding.root_cause:
        items.append(_text_block(f"**Root cause:** {finding.root_cause}"))
    if finding.recommendations:
        items.append(_text_block("**Recommendations:**"))
        items.append(_text_block("\r".join(f"- {item}" for item in finding.recommendations)))
    if (confidence := _confidence(finding)) is not None:
        items.append(_text_block(f"Confidence: {confidence}", isSubtle=True))
    return items


def adaptive_card(report: Report) -> Json:
    """The report as an Adaptive Card 1.4 (what Teams workflows post)."""
    body: list[JsonValue] = [
        _text_block(
            report.title,
            size="Medium",
            weight="Bolder",
            color="Attention" if report.status == "firing" else "Good",
        )
    ]
    if report.text:
        body.append(_text_block(report.text))
    body.append(_fact_set(_facts(report)))
    if report.steps:
        body.append(_text_block("Steps", weight="Bolder", separator=True))
        body.append(_fact_set([(f"{s.name} ({s.kind})", _step_words(s)) for s in report.steps]))
    for finding in report.findings:
        body += _card_finding(finding)
    card: Json = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    if report.links:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": link.label, "url": link.url}
            for link in report.links
        ]
    return card


# --- HTML (email) -------------------------------------------------------------------------


def html(report: Report) -> str:
    """The report as a small HTML document, every value escaped."""
    e = html_text.escape
    parts = [f"<h2>{e(report.title)}</h2>"]
    if report.text:
        parts.append(f"<p>{e(report.text)}</p>")
    parts.append(
        "<table>"
        + "".join(
            f'<tr><th align="left">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in _facts(report)
        )
        + "</table>"
    )
    if report.steps:
        items = "".join(
            f"<li><b>{e(s.name)}</b> ({e(s.kind)}): {e(_step_words(s))}</li>" for s in report.steps
        )
        parts.append(f"<h3>Steps</h3><ul>{items}</ul>")
    for finding in report.findings:
        parts.append(f"<h3>Findings of {e(finding.step)}</h3><p>{e(finding.summary)}</p>")
        if finding.root_cause:
            parts.append(f"<p><b>Root cause:</b> {e(finding.root_cause)}</p>")
        if finding.recommendations:
            items = "".join(f"<li>{e(item)}</li>" for item in finding.recommendations)
            parts.append(f"<p><b>Recommendations:</b></p><ul>{items}</ul>")
        if (confidence := _confidence(finding)) is not None:
            parts.append(f"<p><i>Confidence: {confidence}</i></p>")
    if report.links:
        links = " · ".join(f'<a href="{e(link.url)}">{e(link.label)}</a>' for link in report.links)
        parts.append(f"<p>{links}</p>")
    return "<html><body>" + "".join(parts) + "</body></html>\n"
