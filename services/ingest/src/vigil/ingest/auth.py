"""Source authentication: bearer token or basic auth, checked against the Source's Secret.

The definition names the Secret; its value is resolved here, per request, through the
`SecretResolver` port (so a rotated value counts from the next request on). A Source
without `auth` is open (the controller's log says so). A Secret that cannot be resolved
raises `SecretUnavailable`: the request is refused, never let through. A Secret is read
only for credentials of its scheme, and comparisons are constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from vigil.common.resources import Source
from vigil.common.secrets import SecretKey, SecretResolver


async def authorized(source: Source, authorization: str | None, *, secrets: SecretResolver) -> bool:
    """Whether `authorization` (the header) satisfies the Source's `auth`.

    Raises SecretUnavailable when the Secret to compare with cannot be read.
    """
    auth = source.spec.auth
    if auth is None:
        return True
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
