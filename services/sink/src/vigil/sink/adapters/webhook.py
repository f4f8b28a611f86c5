"""The `webhook` sink: one JSON POST with an idempotency key.

The body carries the notify step's `title` and `message`, the alert, where it comes from
(execution, workflow, step, attempt), and the default report as data (`report`: steps with
state and duration, the agent's findings, links to the execution and its trace).

5xx, 429, 425, 408 and transport errors are transient (with the receiver's `Retry-After`,
when it sent one); other 4xx are permanent: the receiver told us the request itself is
wrong. A URL kept in a Secret (`urlSecretRef`) is resolved at each attempt, so a rotation
counts from the next delivery; a Secret that cannot be resolved is a TransientError naming
it (`SecretUnavailable`: the controller found it when it published the Sink, so it is a
change in flight), retried like a receiver's 503 until the step's deliveries run out.
Errors leave this module as TransientError or PermanentError; retrying is the delivery
loop's job (`vigil.sink.delivering`).

With `signingSecretRef`, every attempt carries `X-Vigil-Signature: t=<unix>,v1=<hex>`:
HMAC-SHA256, keyed with the Secret's value, over `<unix>.` followed by the exact body
bytes. The receiver recomputes it and refuses a stale timestamp (docs/sinks.md shows how).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import structlog
from pydantic import JsonValue

from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError, TransientError
from vigil.common.secrets import SecretKey, SecretResolver, SecretUnavailable
from vigil.sink.adapters.aio_posting import post_bytes
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks, build_report, json_report

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})
SIGNATURE_HEADER = "X-Vigil-Signature"
MAX_RETRY_AFTER_SECONDS = 60.0


class _Answered(Protocol):
    """An HTTP answer of either client (httpx's `Response`, the webhook's `Answer`)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after_seconds(response: _Answered) -> float | None:
    """The receiver's `Retry-After` (seconds or an HTTP-date) as seconds, capped; None
    when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_SECONDS))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_SECONDS))


def signature(key: str, *, timestamp: int, body: bytes) -> str:
    """The `X-Vigil-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256 of "<unix>." + body>`."""
    digest = hmac.new(key.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class Signing:
    """The key to sign with and the time to stamp (a Secret's value: never logged)."""

    key: str
    timestamp: int

    def __repr__(self) -> str:
        return f"Signing(key=<secret>, timestamp={self.timestamp})"


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, JsonValue],
    *,
    idempotency_key: str,
    headers: dict[str, str],
    timeout: float,
    signing: Signing | None = None,
) -> int:
    """POST `body` once; return the 2xx status, or raise Transient/PermanentError."""
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    ours = {"idempotency-key", "content-type", SIGNATURE_HEADER.lower()}
    sent = {k: v for k, v in headers.items() if k.lower() not in ours}
    sent["Content-Type"] = "application/json"
    sent["Idempotency-Key"] = idempotency_key
    if signing is not None:
        sent[SIGNATURE_HEADER] = signature(signing.key, timestamp=signing.timestamp, body=content)
    try:
        answer = await post_bytes(session, url, content, headers=sent, timeout=timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The URL may be a secret (it is for Slack and Teams): the error names it vaguely.
        reason = str(exc).replace(url, "<the sink's URL>") or f"no answer within {timeout:g}s"
        raise TransientError(f"{type(exc).__name__}: {reason}") from exc
    status = answer.status
    if status < 300:
        return status
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        msg = f"webhook answered {status}: {answer.text[:300]}"
        raise PermanentError(msg)
    raise TransientError(f"webhook answered {status}", retry_after=retry_after_seconds(answer))


def webhook_body(notification: Notification, *, links: ReportLinks) -> dict[str, JsonValue]:
    request, notify = notification.request, notification.notify
    return {
        "title": notify.title,
        "message": notify.message,
        "report": json_report(build_report(notification, links=links)),
        "alert": notify.alert.model_dump(mode="json", by_alias=True),
        "executionId": request.execution_id,
        "workflow": {"namespace": request.namespace, "name": request.workflow},
        "step": request.step,
        "attempt": request.attempt,
        "idempotencyKey": notification.idempotency_key,
    }


class WebhookNotifier:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        secrets: SecretResolver,
        links: ReportLinks,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._session = session
        self._secrets = secrets
        self._links = links
        self._clock = clock

    async def send(self, notification: Notification) -> None:
        hook = notification.resource.spec.webhook
        if hook is None:
            msg = f"sink {notification.sink_name} has type webhook but no `webhook` settings"
            raise PermanentError(msg)
        url = hook.url
        if hook.url_secret_ref is not None:
            url = await self._secret(
                notification, hook.url_secret_ref.name, hook.url_secret_ref.key
            )
        if url is None:
            msg = f"sink {notification.sink_name} has no webhook URL"
            raise PermanentError(msg)
        signing = None
        if hook.signing_secret_ref is not None:
            ref = hook.signing_secret_ref
            key = await self._secret(notification, ref.name, ref.key)
            signing = Signing(key=key, timestamp=int(self._clock.now().timestamp()))
        await post_json(
            self._session,
            url,
            webhook_body(notification, links=self._links),
            idempotency_key=notification.idempotency_key,
            headers=dict(hook.headers),
            timeout=parse_duration(hook.timeout),
            signing=signing,
        )

    async def _secret(self, notification: Notification, name: str, key: str) -> str:
        secret = SecretKey(namespace=notification.resource.metadata.namespace, name=name, key=key)
        try:
            return await self._secrets.resolve(secret)
        except SecretUnavailable as exc:
            log.warning("sink_secret_unavailable", sink=notification.sink_name, error=str(exc))
            raise
