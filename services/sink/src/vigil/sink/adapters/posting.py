"""What the chat sinks (`slack`, `msteams`) share: one POST whose URL may be a secret, the
reading of an HTTP answer into delivered / TransientError / PermanentError, and a Secret
resolved at use.

A transport error never shows the URL (a Slack or Teams webhook URL is the credential).
Status codes: 2xx delivered; 408, 425, 429 and 5xx transient, with the receiver's
`Retry-After`; other 4xx permanent, naming what the receiver said. Secrets are resolved
as `adapters/webhook.py` resolves its URL: at each attempt (a rotation counts from the next
delivery), a Secret that cannot be read is a `SecretUnavailable` (transient) logged with
the sink's name.
"""

from __future__ import annotations

import httpx
import structlog
from pydantic import JsonValue

from vigil.common.errors import PermanentError, TransientError
from vigil.common.resource_base import SecretKeyRef
from vigil.common.secrets import SecretKey, SecretResolver, SecretUnavailable
from vigil.sink.adapters.webhook import RETRYABLE_STATUS, retry_after_seconds
from vigil.sink.notifiers import Notification

log = structlog.get_logger(__name__)

ANSWER_SHOWN_CHARACTERS = 300


async def post_once(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, JsonValue],
    *,
    receiver: str,
    headers: dict[str, str],
    timeout: float,
    hidden: tuple[str, ...] = (),
) -> httpx.Response:
    """POST `body` as JSON once; a transport error is a TransientError that quotes neither
    the URL nor any of the `hidden` values (a token in a header)."""
    try:
        return await client.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = str(exc).replace(url, "<the sink's URL>")
        for value in hidden:
            reason = reason.replace(value, "<hidden>")
        msg = f"{receiver} could not be reached: {type(exc).__name__}: {reason}"
        raise TransientError(msg) from exc


def check_status(response: httpx.Response, *, receiver: str) -> None:
    """Return on 2xx; otherwise raise what the status means, with the receiver's words."""
    status = response.status_code
    if status < 300:
        return
    said = response.text.strip()[:ANSWER_SHOWN_CHARACTERS]
    msg = f"{receiver} answered {status}" + (f": {said}" if said else "")
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        raise PermanentError(msg)
    raise TransientError(msg, retry_after=retry_after_seconds(response))


async def secret_value(
    secrets: SecretResolver, notification: Notification, ref: SecretKeyRef
) -> str:
    """The value of the Secret key `ref` in the sink's namespace, read now."""
    secret = SecretKey(
        namespace=notification.resource.metadata.namespace, name=ref.name, key=ref.key
    )
    try:
        return await secrets.resolve(secret)
    except SecretUnavailable as exc:
        log.warning("sink_secret_unavailable", sink=notification.sink_name, error=str(exc))
        raise
