"""Source authentication: bearer token or basic auth from the Source's secret references.

A Source without `auth` is open (the controller's log says so); comparisons are constant
time.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from vigil.common.definitions import Definition
from vigil.common.resources import Source


def authorized(definition: Definition, authorization: str | None) -> bool:
    source = definition.resource
    assert isinstance(source, Source)
    auth = source.spec.auth
    if auth is None:
        return True
    header = authorization or ""
    if auth.bearer_token_secret_ref is not None:
        ref = auth.bearer_token_secret_ref
        expected = definition.secret(ref.name, ref.key)
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode()):
            return True
    if auth.basic_auth_secret_ref is not None:
        ref_basic = auth.basic_auth_secret_ref
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        want_user = definition.secret(ref_basic.name, ref_basic.username_key)
        want_password = definition.secret(ref_basic.name, ref_basic.password_key)
        return hmac.compare_digest(user.encode(), want_user.encode()) & hmac.compare_digest(
            password.encode(), want_password.encode()
        )
    return False
