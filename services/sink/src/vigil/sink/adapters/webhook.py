"""Webhook delivery over HTTP: JSON POST with an idempotency key, retried with backoff.

5xx, 429, 408 and transport errors are retried (honouring `Retry-After`); other 4xx are
permanent: the receiver told us the request itself is wrong. Errors leave this module as
TransientError or PermanentError.
"""

from __future__ import annotations

import asyncio
import email.utils
from datetime import UTC, datetime

import httpx
from pydantic import JsonValue

from vigil.common.errors import PermanentError, TransientError

RETRYABLE_STATUS = frozenset({408, 425, 429})
MAX_RETRY_AFTER_SECONDS = 60.0


def _retry_after(response: httpx.Response) -> float | None:
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


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient, *, attempts: int, backoff: float) -> None:
        self._client = client
        self._attempts = attempts
        self._backoff = backoff

    async def send(
        self,
        url: str,
        body: dict[str, JsonValue],
        *,
        idempotency_key: str,
        headers: dict[str, str],
        timeout: float,
    ) -> int:
        """POST `body`; return the final status code, or raise Transient/PermanentError."""
        delay = self._backoff
        last: str = ""
        retry_after: float | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.post(
                    url,
                    json=body,
                    headers={
                        **{k: v for k, v in headers.items() if k.lower() != "idempotency-key"},
                        "Idempotency-Key": idempotency_key,
                    },
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                retry_after = None
            else:
                status = response.status_code
                if status < 300:
                    return status
                if 400 <= status < 500 and status not in RETRYABLE_STATUS:
                    msg = f"webhook answered {status}: {response.text[:300]}"
                    raise PermanentError(msg)
                last = f"webhook answered {status}"
                retry_after = _retry_after(response)
            if attempt < self._attempts:
                await asyncio.sleep(retry_after if retry_after is not None else delay)
                delay *= 2
        msg = f"webhook delivery failed after {self._attempts} attempts: {last}"
        raise TransientError(msg, retry_after=retry_after)
