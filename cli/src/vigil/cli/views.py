"""The console's views in the terminal, against a running Vigil's API: `vigil executions`
(with `--watch`), `vigil execution ID`, `vigil alerts`, `vigil definitions`.

Each reads the HTTP API (`--url`, default `VIGIL_URL` or http://127.0.0.1:8080) with the
token of `VIGIL_API_TOKEN`, and prints a table, or with `--output json` the API's own
JSON for scripts. What goes wrong (Vigil unreachable, a refused token, a bad filter) is
one line on stderr naming it, and exit code 1 (2 for a usage error).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from vigil.common.presenting import duration_text, key_labels

DEFAULT_URL = "http://127.0.0.1:8080"
REQUEST_TIMEOUT_SECONDS = 10.0
WATCH_SECONDS = 2.0
WATCH_LIMIT = 50  # the newest executions read at each look
OUTPUT_LINES = 20  # of each stream, in `vigil execution`; the API has all of it


class ViewError(Exception):
    """What the user is told, in one line, before exit code 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Api:
    url: str
    token: str | None
    transport: httpx.BaseTransport | None = None  # tests: none; a real server on loopback

    @classmethod
    def from_environment(cls, url: str | None) -> Api:
        return cls(
            url=(url or os.environ.get("VIGIL_URL") or DEFAULT_URL).rstrip("/"),
            token=os.environ.get("VIGIL_API_TOKEN") or None,
        )

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with httpx.Client(
                base_url=self.url,
                headers=headers,
                timeout=REQUEST_TIMEOUT_SECONDS,
                transport=self.transport,
            ) as http:
                answer = http.get(path, params=list(params))
        except httpx.HTTPError as exc:
            msg = f"cannot reach Vigil at {self.url}: {exc or type(exc).__name__}"
            raise ViewError(msg) from exc
        if answer.status_code == 401:
            hint = "set VIGIL_API_TOKEN" if not self.token else "VIGIL_API_TOKEN was refused"
            raise ViewError(f"{self.url} wants an API token: {hint} ({_error(answer)})")
        if answer.status_code >= 400:
            raise ViewError(f"{path}: {answer.status_code} {_error(answer)}")
        return answer.json()


def _error(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:200]


# --- formatting --------------------------------------------------------------------------


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _stamp(value: str | None) -> str:
    moment = _moment(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _seconds(start: str | None, end: str | None, now: datetime) -> float | None:
    began = _moment(start)
    if began is None:
        return None
    return max(((_moment(end) or now) - began).total_seconds(), 0.0)


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell; the last one is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _alert_text(alert: dict[str, Any]) -> str:
    labels: dict[str, str] = alert.get("labels", {})
    name = labels.get("alertname", alert.get("fingerprint", ""))
    extra = " ".join(f"{k}={v}" for k, v in key_labels(labels))
    return f"{name} {extra}".strip()


def execution_rows(items: Sequence[dict[str, Any]], now: datetime) -> list[list[str]]:
    return [
        [
            e["id"],
            f"{e['namespace']}/{e['workflow']}",
            _alert_text(e["alert"]),
            e["state"],
            _stamp(e["createdAt"]),
            duration_text(_seconds(e["createdAt"], e.get("finishedAt"), now)),
        ]
        for e in items
    ]


EXECUTION_HEADERS = ("ID", "WORKFLOW", "ALERT", "STATE", "STARTED (UTC)", "DURATION")


def execution_text(
    execution: dict[str, Any], deliveries: list[dict[str, Any]], now: datetime
) -> str:
    """One execution: its facts, the timeline as a table, each step's output or finding."""
    e = execution
    out = [
        f"{_alert_text(e['alert'])}  [{e['state']}]",
        f"execution {e['id']}  workflow {e['namespace']}/{e['workflow']}",
        f"started {_stamp(e['createdAt'])} UTC, "
        f"{duration_text(_seconds(e['createdAt'], e.get('finishedAt'), now))}"
        + ("" if e.get("finishedAt") else " so far"),
    ]
    if e.get("error"):
        out.append(f"error: {e['error']}")
    if e.get("traceUrl"):
        out.append(f"trace: {e['traceUrl']}")
    created = _moment(e["createdAt"]) or now
    timeline = []
    for step in e["steps"]:
        began = _moment(step.get("startedAt"))
        offset = f"+{duration_text((began - created).total_seconds())}" if began else ""
        timeline.append(
            [
                step["name"],
                step["kind"],
                step["state"],
                str(step.get("attempt", 0)),
                offset,
                duration_text(_seconds(step.get("startedAt"), step.get("finishedAt"), now)),
            ]
        )
    out += ["", table(timeline, ("STEP", "KIND", "STATE", "ATTEMPT", "AT", "DURATION"))]
    for step in e["steps"]:
        detail = list(_step_detail(step, [d for d in deliveries if d["step"] == step["name"]]))
        if detail:
            out += ["", f"--- {step['name']} ({step['kind']}, {step['state']})", *detail]
    return "\n".join(out)


def _step_detail(step: dict[str, Any], deliveries: list[dict[str, Any]]) -> Iterator[str]:
    if step.get("error"):
        yield f"error: {step['error']}"
    output: dict[str, Any] = step.get("output") or {}
    if output:
        shown = _DETAIL_OF.get(step["kind"])
        yield from shown(output) if shown else [json.dumps(output, sort_keys=True)]
    for d in deliveries:
        detail = f"  {d['detail']}" if d.get("detail") else ""
        where = f"{d['sink']} ({d['sinkType']}) attempt {d['attempt']}"
        yield f"delivery to {where}: {d['status']}{detail}"


def _command_detail(output: dict[str, Any]) -> Iterator[str]:
    if output.get("command"):
        yield f"$ {shlex.join(output['command'])}"
    yield f"exit code {output.get('exitCode')}"
    for stream in ("stdout", "stderr"):
        lines = str(output.get(stream) or "").splitlines()
        if lines:
            yield f"{stream}:"
            yield from (f"  {line}" for line in lines[:OUTPUT_LINES])
            if len(lines) > OUTPUT_LINES:
                yield f"  … {len(lines) - OUTPUT_LINES} more lines (--output json)"
    if output.get("artifactId"):
        yield f"full output: artifact {output['artifactId']}"


def _finding_detail(output: dict[str, Any]) -> Iterator[str]:
    if not isinstance(output.get("summary"), str):
        return
    yield f"summary: {output['summary']}"
    if output.get("rootCause"):
        yield f"root cause: {output['rootCause']}"
    for item in output.get("evidence") or []:
        if isinstance(item, dict):
            call = f" (tool call {item['toolCall']})" if item.get("toolCall") else ""
            yield f"evidence: {item.get('claim', '')}{call}"
    for recommendation in output.get("recommendations") or []:
        yield f"recommendation: {recommendation}"
    if output.get("transcriptId"):
        yield f"transcript: artifact {output['transcriptId']}"


def _notification_detail(output: dict[str, Any]) -> Iterator[str]:
    if output.get("title"):
        yield f"title: {output['title']}"


_DETAIL_OF: dict[str, Callable[[dict[str, Any]], Iterator[str]]] = {
    "cli": _command_detail,
    "agent": _finding_detail,
    "notify": _notification_detail,
}


# --- the commands ------------------------------------------------------------------------


def _filters(**given: str | None) -> list[tuple[str, str]]:
    return [(k, v) for k, v in given.items() if v]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionQuery:
    """The filters of `vigil executions`, as the API's query parameters."""

    namespace: str | None = None
    workflow: str | None = None
    state: str | None = None
    search: str | None = None  # text in the alert's labels (`q`)
    since: str | None = None

    def params(self, limit: int) -> list[tuple[str, str]]:
        given = {
            "namespace": self.namespace,
            "workflow": self.workflow,
            "state": self.state,
            "q": self.search,
            "since": self.since,
        }
        return [*_filters(**given), ("limit", str(limit))]


def executions(api: Api, query: ExecutionQuery, *, limit: int, output: str, out: TextIO) -> None:
    page = api.get("/api/v1/executions", query.params(limit))
    if output == "json":
        out.write(json.dumps(page, indent=2) + "\n")
        return
    now = datetime.now(UTC)
    if not page["items"]:
        out.write("no executions\n")
        return
    out.write(table(execution_rows(page["items"], now), EXECUTION_HEADERS) + "\n")


def watch_executions(
    api: Api,
    query: ExecutionQuery,
    *,
    output: str,
    out: TextIO,
    interval: float = WATCH_SECONDS,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """The newest executions, then a line per new execution or change of state, as it is
    seen (the API read every `interval` seconds); JSON lines with `--output json`."""
    params = query.params(WATCH_LIMIT)
    seen: dict[str, str] = {}
    first = True
    done = 0
    while rounds is None or done < rounds:
        items = api.get("/api/v1/executions", params)["items"]
        changed = [e for e in reversed(items) if seen.get(e["id"]) != e["state"]]
        for e in items:
            seen[e["id"]] = e["state"]
        if output == "json":
            for e in changed:
                out.write(json.dumps(e) + "\n")
        elif changed:
            rows = execution_rows(changed, datetime.now(UTC))
            text = table(rows, EXECUTION_HEADERS)
            out.write((text if first else "\n".join(text.splitlines()[1:])) + "\n")
            first = False
        out.flush()
        done += 1
        if rounds is None or done < rounds:
            sleep(interval)


def execution(api: Api, execution_id: str, *, output: str, out: TextIO) -> None:
    found = api.get(f"/api/v1/executions/{execution_id}")
    deliveries = api.get(f"/api/v1/executions/{execution_id}/deliveries")["items"]
    if output == "json":
        out.write(json.dumps({**found, "deliveries": deliveries}, indent=2) + "\n")
        return
    out.write(execution_text(found, deliveries, datetime.now(UTC)) + "\n")


def alerts(
    api: Api,
    *,
    matchers: Sequence[str],
    status: str | None,
    namespace: str | None,
    limit: int,
    output: str,
    out: TextIO,
) -> None:
    params = [
        *_filters(status=status, namespace=namespace),
        *(("match", m) for m in matchers),
        ("limit", str(limit)),
    ]
    page = api.get("/api/v1/alerts", params)
    if output == "json":
        out.write(json.dumps(page, indent=2) + "\n")
        return
    rows = [
        [
            a["id"],
            _alert_text(a),
            a["status"],
            _stamp(a["lastSeen"]),
            str(a["occurrences"]),
        ]
        for a in page["items"]
    ]
    if not rows:
        more = (
            " on this page (there are older alerts: --output json shows `next`)"
            if page.get("next")
            else ""
        )
        out.write(f"no alerts{more}\n")
        return
    out.write(table(rows, ("ID", "ALERT", "STATUS", "LAST SEEN (UTC)", "SEEN")) + "\n")


def definitions(api: Api, *, output: str, out: TextIO) -> None:
    found = api.get("/api/v1/definitions")
    if output == "json":
        out.write(json.dumps(found, indent=2) + "\n")
        return
    rows = [
        [
            d["kind"],
            f"{d['namespace']}/{d['name']}",
            "valid" if d["ready"] else "INVALID",
            d["message"]
            if not d["ready"]
            else (f"next fire {_stamp(d['nextFireAt'])}" if d.get("nextFireAt") else ""),
        ]
        for d in found["items"]
    ]
    if not rows:
        out.write("no definitions\n")
        return
    out.write(table(rows, ("KIND", "NAME", "STATE", "MESSAGE")) + "\n")
    invalid = sum(1 for d in found["items"] if not d["ready"])
    if invalid:
        sys.stderr.write(f"{invalid} definition(s) invalid\n")
