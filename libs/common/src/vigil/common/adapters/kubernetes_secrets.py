"""Kubernetes mode's `SecretResolver`: Secret objects read through the API.

A Secret is read by name (RBAC: `get` on secrets, nothing more) and kept for `ttl`
seconds, so a burst of webhooks costs one API call and a rotated value is used at most
`ttl` seconds late. A missing Secret is remembered for `ttl` too (an unauthenticated
flood at a Source whose Secret is gone does not become a flood at the API server); a
failure to reach the API is not (the next resolution tries again). Concurrent resolutions
of one Secret share one read. API errors leave as `SecretUnavailable`, naming the Secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.errors import InvalidInput
from vigil.common.secrets import SecretKey, SecretUnavailable, read_secret, value_of

_API_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Read:
    at: datetime
    values: Mapping[str, str] | None  # None: the Secret does not exist


class KubernetesSecrets:
    """Secrets from the Kubernetes API, each cached for `ttl` seconds."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        ttl: float,
        request_timeout: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._ttl = timedelta(seconds=ttl)
        self._request_timeout = request_timeout
        self._clock = clock
        self._reads: dict[tuple[str, str], _Read] = {}
        self._reading: dict[tuple[str, str], asyncio.Lock] = {}

    async def resolve(self, secret: SecretKey) -> str:
        identity = (secret.namespace, secret.name)
        read = self._fresh(identity)
        if read is None:
            lock = self._reading.setdefault(identity, asyncio.Lock())
            async with lock:
                read = self._fresh(identity) or await self._read(secret)
        return value_of(secret, read.values, where="in Kubernetes")

    def _fresh(self, identity: tuple[str, str]) -> _Read | None:
        read = self._reads.get(identity)
        if read is None or self._clock.now() - read.at >= self._ttl:
            return None
        return read

    async def _read(self, secret: SecretKey) -> _Read:
        try:
            body = await self._core.read_namespaced_secret(
                secret.name, secret.namespace, _request_timeout=self._request_timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise SecretUnavailable(secret, _refused(secret, exc)) from exc
            values: Mapping[str, str] | None = None
        except _API_ERRORS as exc:
            problem = f"cannot be read: the Kubernetes API is unreachable ({exc!r})"
            raise SecretUnavailable(secret, problem) from exc
        else:
            try:
                values = read_secret(self._api.sanitize_for_serialization(body)).values
            except InvalidInput as exc:
                raise SecretUnavailable(secret, f"is not usable: {exc}") from exc
        read = _Read(at=self._clock.now(), values=values)
        self._reads[(secret.namespace, secret.name)] = read
        return read


def _refused(secret: SecretKey, exc: ApiException) -> str:
    if exc.status in (401, 403):
        return (
            f"cannot be read: the Kubernetes API answered {exc.status} {exc.reason} "
            f"(this service's account needs `get` on secrets in {secret.namespace})"
        )
    return f"cannot be read: the Kubernetes API answered {exc.status} {exc.reason}"
