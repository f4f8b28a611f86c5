"""Every request ingest refuses, counted by reason: `vigil_ingest_rejected_total{reason}`.

One counter for the whole edge, so one query shows what clients are being refused and why:
webhooks (`vigil.ingest.hooks`), API tokens (`vigil.ingest.access`), request validation
(`vigil.ingest.api`) and the server's own limits (`vigil.common.adapters.http_limits`,
whose reasons are the last four). Every reason is exported from the start, at 0.
"""

from __future__ import annotations

from typing import Literal, get_args

from prometheus_client import Counter

type Reason = Literal[
    # webhooks
    "not_ready",  # 503: definitions not loaded yet
    "unknown_source",  # 404
    "unauthorized",  # 401: the Source's credentials
    "secret_unavailable",  # 503: the Source's Secret cannot be read to check them
    "source_type_unavailable",  # 501
    "unsupported_media_type",  # 415
    "too_large",  # 413: the body
    "bad_json",  # 400
    "invalid_unicode",  # 400: a lone surrogate
    "too_deep",  # 400: JSON nested too deeply
    "invalid_payload",  # 422: not this Source type's payload
    "label_too_large",  # 413: one label or annotation
    "labels_too_large",  # 413: all of one alert's (or of the group's)
    "over_max_payload",  # 413: an alert larger than the bus's largest message
    "not_stored",  # 503: JetStream did not acknowledge
    # the API
    "no_token",  # 401
    "bad_token",  # 401
    "missing_scope",  # 403
    "invalid_request",  # 400/422: a parameter or body the endpoint cannot take
    "no_route",  # 404/405: no such path or method
    # the HTTP server
    "header_timeout",  # 408 or closed
    "body_timeout",  # 408 or closed
    "too_many_connections",  # 503
    "bad_http",  # 400
]

REASONS: tuple[Reason, ...] = get_args(Reason.__value__)

REJECTED = Counter(
    "vigil_ingest_rejected_total",
    "Requests ingest refused (4xx, and the 5xx it answers itself), by reason.",
    ["reason"],
)
for _reason in REASONS:
    REJECTED.labels(reason=_reason)


def count_rejection(reason: Reason) -> None:
    REJECTED.labels(reason=reason).inc()
