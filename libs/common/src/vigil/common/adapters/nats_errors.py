"""What nats-py raises when the server or the connection fails: translated at each adapter."""

from __future__ import annotations

import nats.errors
import nats.js.errors

NATS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    TimeoutError,
    ConnectionError,
)
