"""The webhook sink's HTTP client: an aiohttp session pooling keep-alive connections per
receiver, and one traced POST (`post_bytes`).

Why not httpx, as the chat sinks use: at the webhook sink's rates, httpx's connection pool
bookkeeping (every request checks every idle connection for readability) cost 1.3-1.6 ms of
CPU per request against a local receiver, aiohttp 0.1 ms (16 requests in flight, a /tmp
benchmark posting to `bench/receiver.py`). aiohttp is in every sink image already (through
the Kubernetes client).

Each POST is a client span named `POST`, a child of the current span, whose URL attribute
shows the scheme, host and port only (a webhook URL may carry a credential in its path),
and the request carries the span's `traceparent` on to the receiver, as the httpx
instrumentation does for the other sinks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from opentelemetry import trace

from vigil.common.telemetry import inject_headers

tracer = trace.get_tracer("vigil.sink.http")

USER_AGENT = "vigil-sink"
# Idle keep-alive connections are closed after this long (a receiver's own idle timeout
# is often 60 s or more: reusing a connection the receiver closed costs a retry).
KEEPALIVE_SECONDS = 15.0
MAX_CONNECTIONS = 100  # over every receiver; deliveries in flight are fewer
ANSWER_KEPT_BYTES = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What a receiver answered: status, headers and (for errors only) its text."""

    status: int
    headers: Mapping[str, str]
    text: str = ""


def new_session() -> aiohttp.ClientSession:
    """The sink's pooled session (use it as an async context manager: it closes the pool)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS),
        headers={"User-Agent": USER_AGENT},
        # Each request says its own timeout; none for the session as a whole.
        timeout=aiohttp.ClientTimeout(total=None),
    )


def shown_url(url: str) -> str:
    """Scheme, host and port of `url`: what a trace may show of it."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


async def post_bytes(
    session: aiohttp.ClientSession,
    url: str,
    content: bytes,
    *,
    headers: dict[str, str],
    timeout: float,
) -> Answer:
    """POST `content` once, within `timeout` seconds to connect and `timeout` between reads
    (as httpx's timeout meant); raises aiohttp.ClientError or TimeoutError when no answer
    came. The answer is read whole (so its connection is reused); its text is kept for an
    error only."""
    parts = urlsplit(url)
    with tracer.start_as_current_span(
        "POST",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "url.full": shown_url(url),
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        },
    ) as span:
        sent = inject_headers(dict(headers))
        async with session.post(
            url,
            data=content,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
            allow_redirects=False,
        ) as response:
            span.set_attribute("http.response.status_code", response.status)
            body = await response.read()
            text = ""
            if response.status >= 300:
                span.set_status(trace.StatusCode.ERROR, f"answered {response.status}")
                text = body[:ANSWER_KEPT_BYTES].decode(errors="replace")
            return Answer(status=response.status, headers=response.headers, text=text)
