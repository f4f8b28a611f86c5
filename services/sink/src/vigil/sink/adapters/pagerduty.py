"""The `pagerduty` sink: PagerDuty Events API v2 (`POST /v2/enqueue`).

A firing alert is a `trigger`, a resolved one a `resolve` with the same `dedup_key`, so
the incident PagerDuty opened closes when the alert does. A trigger carries the default
report (`vigil.sink.report`): its title and text as the summary, the whole report in
`custom_details`, and links to the execution and its trace. The key is
`vigil/{namespace}/{workflow}/{fingerprint}`: the alert's fingerprint keeps re-sends of one
alert on one incident, and the workflow keeps two workflows that notify on the same alert
from sharing (and resolving) each other's incident. Keys longer than PagerDuty's 255
characters are shortened to a hash.

PagerDuty answers 202 `{"status": "success", "dedup_key": ...}`; 400 `{"status":
"invalid event", "errors": [...]}` is permanent and names the errors; 429 and 5xx are
transient (backoff, or `Retry-After` when sent). The routing key is read from its Secret
through the SecretResolver at each attempt, as the webhook sink reads its URL, and never
appears in an error or a log line.
"""

from __future__ import annotations

import hashlib

import httpx
import structlog
from pydantic import JsonValue

from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError, TransientError
from vigil.common.secrets import SecretKey, SecretResolver, SecretUnavailable
from vigil.sink.adapters.webhook import RETRYABLE_STATUS, retry_after_seconds
from vigil.sink.notifiers import Notification
from vigil.sink.report import Report, ReportLinks, build_report, plain_text

log = structlog.get_logger(__name__)

MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
# PagerDuty's severities are critical, error, warning and info; an alert's `severity`
# label maps onto them, and anything else (or none) is `error`: worth a look, not a page.
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info", "error": "error"}
DEFAULT_SEVERITY = "error"


def dedup_key(notification: Notification) -> str:
    request = notification.request
    key = f"vigil/{request.namespace}/{request.workflow}/{notification.notify.alert.fingerprint}"
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return "vigil/" + hashlib.sha256(key.encode()).hexdigest()


def summary_text(report: Report) -> str:
    """The one line PagerDuty shows: the report's title, then its text."""
    text = report.title + (f": {report.text}" if report.text else "")
    text = " ".join(text.split())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def pagerduty_event(
    notification: Notification, *, routing_key: str, source: str, links: ReportLinks
) -> dict[str, JsonValue]:
    alert = notification.notify.alert
    event: dict[str, JsonValue] = {
        "routing_key": routing_key,
        "dedup_key": dedup_key(notification),
        "event_action": "resolve" if alert.status == "resolved" else "trigger",
    }
    if alert.status == "resolved":
        return event
    report = build_report(notification, links=links)
    labels = alert.labels
    event["payload"] = {
        "summary": summary_text(report),
        "source": source or labels.get("instance") or labels.get("job") or "vigil",
        "severity": SEVERITIES.get(labels.get("severity", "").lower(), DEFAULT_SEVERITY),
        "timestamp": alert.starts_at.isoformat(),
        # PagerDuty shows custom_details as a table of fields: the report in full, then
        # what a responder filters on.
        "custom_details": {
            "report": plain_text(report),
            "message": report.text,
            "workflow": report.workflow,
            "execution_id": report.execution_id,
            "labels": dict(labels),
            "annotations": dict(alert.annotations),
        },
    }
    if report.links:
        event["links"] = [
            {"href": link.url, "text": f"Vigil {link.label.lower()}"} for link in report.links
        ]
    return event


def _invalid_event(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:500]
    return response.text[:300]


class PagerDutyNotifier:
    def __init__(
        self, client: httpx.AsyncClient, *, secrets: SecretResolver, links: ReportLinks
    ) -> None:
        self._client = client
        self._secrets = secrets
        self._links = links

    async def send(self, notification: Notification) -> None:
        spec = notification.resource.spec.pagerduty
        if spec is None:
            msg = f"sink {notification.sink_name} has type pagerduty but no `pagerduty` settings"
            raise PermanentError(msg)
        ref = spec.routing_key_secret_ref
        secret = SecretKey(
            namespace=notification.resource.metadata.namespace, name=ref.name, key=ref.key
        )
        try:
            routing_key = await self._secrets.resolve(secret)
        except SecretUnavailable as exc:
            log.warning("sink_secret_unavailable", sink=notification.sink_name, error=str(exc))
            raise
        event = pagerduty_event(
            notification, routing_key=routing_key, source=spec.source, links=self._links
        )
        await self._post(spec.url, event, notification, timeout=parse_duration(spec.timeout))

    async def _post(
        self,
        url: str,
        event: dict[str, JsonValue],
        notification: Notification,
        *,
        timeout: float,
    ) -> None:
        try:
            response = await self._client.post(
                url,
                json=event,
                headers={"Idempotency-Key": notification.idempotency_key},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"PagerDuty: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 300:
            log.info("pagerduty_accepted", action=event["event_action"], key=event["dedup_key"])
            return
        if status == 400:
            raise PermanentError(f"PagerDuty refused the event: {_invalid_event(response)}")
        if 400 <= status < 500 and status not in RETRYABLE_STATUS:
            raise PermanentError(f"PagerDuty answered {status}: {response.text[:300]}")
        raise TransientError(
            f"PagerDuty answered {status}", retry_after=retry_after_seconds(response)
        )
