"""Why a model gave no answer, in a person's words, for both SDKs (written once).

The openai and anthropic SDKs share the shape of their errors (a timeout, a connection
error, a status error with `status_code` and `body`); each adapter passes its own classes.
"""

from __future__ import annotations

import json

from vigil.executor.models import ModelUnavailable


def unavailable(
    exc: Exception,
    model: str,
    *,
    timeout: type[Exception],
    connection: type[Exception],
    status: type[Exception],
) -> ModelUnavailable:
    if isinstance(exc, timeout):
        return ModelUnavailable("timed out", model=model)
    if isinstance(exc, connection):
        # The SDKs' message is only "Connection error."; what happened is in the cause
        # (refused, reset, the server hanging up without an answer).
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None and str(exc.__cause__) else ""
        return ModelUnavailable(f"cannot connect: {exc}{cause}", model=model)
    if isinstance(exc, status):
        code = getattr(exc, "status_code", "?")
        raw = getattr(exc, "body", None)
        body = json.dumps(raw)[:300] if raw is not None else str(getattr(exc, "message", exc))
        lowered = body.lower()
        if ("context" in lowered and "length" in lowered) or "too long" in lowered:
            reason = f"context too long ({code}): {body}"
            return ModelUnavailable(reason, model=model, healthy=True)
        # 5xx and 429: the server is in trouble; another 4xx: this request is.
        healthy = isinstance(code, int) and code < 500 and code != 429
        return ModelUnavailable(f"answered {code}: {body}", model=model, healthy=healthy)
    return ModelUnavailable(f"{type(exc).__name__}: {exc}", model=model)
