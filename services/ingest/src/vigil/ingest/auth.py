"""Source authentication: bearer token, basic auth or an HMAC signature, against a Secret.

The definition names the Secret; its value is resolved here, per request, through the
`SecretResolver` port (so a rotated value counts from the next request on). A Source
without `auth` is open (the controller's log says so). A Secret that cannot be resolved
raises `SecretUnavailable`: the request is refused, never let through. A Secret is read
only for credentials of its scheme, and comparisons are constant time.

Bearer and basic are read from the `Authorization` header before the body (`authorized`);
an HMAC signature covers the raw body, so it is checked after the bounded read and before
the body is parsed (`signature_problem`). A Source with `hmac` alone needs no
`Authorization`; with `hmac` and bearer or basic, a request needs both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from vigil.common.durations import parse_duration
from vigil.common.resources import HmacAuth, Source
from vigil.common.secrets import SecretKey, SecretResolver

MAX_TIMESTAMP_DIGITS = 12  # Unix seconds until the year 33658; more is no timestamp


async def authorized(source: Source, authorization: str | None, *, secrets: SecretResolver) -> bool:
    """Whether `authorization` (the header) satisfies the Source's `auth`.

    Raises SecretUnavailable when the Secret to compare with cannot be read.
    """
    auth = source.spec.auth
    if auth is None:
        return True
    if auth.bearer_token_secret_ref is None and auth.basic_auth_secret_ref is None:
        return auth.hmac is not None  # the signature is checked once the body is read
    namespace = source.metadata.namespace
    scheme, _, credentials = (authorization or "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and auth.bearer_token_secret_ref is not None:
        ref = auth.bearer_token_secret_ref
        expected = await secrets.resolve(SecretKey(namespace=namespace, name=ref.name, key=ref.key))
        return hmac.compare_digest(credentials.encode(), expected.encode())
    if scheme == "basic" and auth.basic_auth_secret_ref is not None:
        basic = auth.basic_auth_secret_ref
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        want_user = await secrets.resolve(
            SecretKey(namespace=namespace, name=basic.name, key=basic.username_key)
        )
        want_password = await secrets.resolve(
            SecretKey(namespace=namespace, name=basic.name, key=basic.password_key)
        )
        return hmac.compare_digest(user.encode(), want_user.encode()) & hmac.compare_digest(
            password.encode(), want_password.encode()
        )
    return False


async def signature_problem(
    source: Source,
    body: bytes,
    headers: Mapping[str, str],
    *,
    secrets: SecretResolver,
    now: datetime,
) -> str | None:
    """What is wrong with the body's HMAC signature, or None when it is good or not asked
    for. `headers` is looked up case-insensitively (Starlette's headers are).

    Raises SecretUnavailable when the Secret to sign with cannot be read.
    """
    auth = source.spec.auth
    if auth is None or auth.hmac is None:
        return None
    spec = auth.hmac
    given = headers.get(spec.header)
    if given is None:
        return f"missing signature header {spec.header}"
    signed = body
    if spec.timestamp_header is not None:
        stamp = headers.get(spec.timestamp_header)
        if stamp is None:
            return f"missing timestamp header {spec.timestamp_header}"
        stale = _stale(stamp, spec, now)
        if stale is not None:
            return stale
        signed = stamp.encode() + b":" + body
    if not given.startswith(spec.prefix):
        return f"signature header {spec.header} does not start with {spec.prefix!r}"
    ref = spec.secret_ref
    key = await secrets.resolve(
        SecretKey(namespace=source.metadata.namespace, name=ref.name, key=ref.key)
    )
    expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    digest = given.removeprefix(spec.prefix).strip().lower()
    if not hmac.compare_digest(digest.encode(), expected.encode()):
        return f"bad signature in {spec.header}: it is not the HMAC-SHA256 of the body"
    return None


def _stale(stamp: str, spec: HmacAuth, now: datetime) -> str | None:
    """Why the timestamp header is refused (not Unix seconds, or too far from now)."""
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > MAX_TIMESTAMP_DIGITS:
        return f"timestamp header {spec.timestamp_header} is not Unix seconds"
    skew = abs(now.timestamp() - int(stamp))
    if skew > parse_duration(spec.max_skew):
        return (
            f"timestamp header {spec.timestamp_header} is {int(skew)}s away from now, over"
            f" maxSkew {spec.max_skew} (a replayed or delayed request)"
        )
    return None
