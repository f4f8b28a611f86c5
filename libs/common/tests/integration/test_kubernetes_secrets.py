"""Kubernetes mode's Secret resolver (`KubernetesSecrets`) against kmock, the Kubernetes
API emulator over HTTP: values decoded from `data`, one API read per Secret per TTL however
many resolutions, a rotation seen once the TTL has passed, and every failure a
`SecretUnavailable` naming the Secret and the problem."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from kubernetes_asyncio import client

from tests.support.kubernetes import kubeconfig
from tests.support.nats import free_port
from vigil.common.adapters.kubernetes_secrets import KubernetesSecrets
from vigil.common.adapters.service import secret_resolver
from vigil.common.secrets import SecretKey, SecretUnavailable
from vigil.common.settings import SecretSettings
from vigil.common.testing import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TTL = 10.0
TOKEN = SecretKey(namespace="ops", name="ingest-token", key="token")
SECRETS = kmock.resource("v1/secrets")


def put_secret(k8s: kmock.KubernetesEmulator, token: str) -> None:
    k8s.objects["v1/secrets", "ops", "ingest-token"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ingest-token", "namespace": "ops"},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def reads(k8s: kmock.KubernetesEmulator) -> int:
    return len(k8s["get", SECRETS])


@pytest.fixture
async def api(k8s: kmock.KubernetesEmulator) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(client.Configuration(host=str(k8s.url))) as http:
        yield http


async def test_a_value_is_read_once_per_ttl_and_a_rotation_is_seen_after_it(
    k8s: kmock.KubernetesEmulator, api: client.ApiClient
) -> None:
    put_secret(k8s, "first-token")
    clock = FakeClock()
    secrets = KubernetesSecrets(api, ttl=TTL, clock=clock)

    assert await secrets.resolve(TOKEN) == "first-token"
    put_secret(k8s, "second-token")
    clock.advance(TTL - 1)
    assert await secrets.resolve(TOKEN) == "first-token"  # still cached
    assert reads(k8s) == 1

    clock.advance(1)
    assert await secrets.resolve(TOKEN) == "second-token"
    assert reads(k8s) == 2


async def test_concurrent_resolutions_of_one_secret_share_one_read(
    k8s: kmock.KubernetesEmulator, api: client.ApiClient
) -> None:
    put_secret(k8s, "first-token")
    secrets = KubernetesSecrets(api, ttl=TTL, clock=FakeClock())

    values = await asyncio.gather(*(secrets.resolve(TOKEN) for _ in range(10)))

    assert values == ["first-token"] * 10
    assert reads(k8s) == 1


async def test_a_missing_secret_names_it_and_is_remembered_for_the_ttl(
    k8s: kmock.KubernetesEmulator, api: client.ApiClient
) -> None:
    clock = FakeClock()
    secrets = KubernetesSecrets(api, ttl=TTL, clock=clock)

    for _ in range(3):
        with pytest.raises(SecretUnavailable) as raised:
            await secrets.resolve(TOKEN)
        assert str(raised.value) == "Secret ops/ingest-token is not defined in Kubernetes"
    assert reads(k8s) == 1, "a flood at a Source whose Secret is gone is no flood at the API"

    put_secret(k8s, "restored-token")
    clock.advance(TTL)
    assert await secrets.resolve(TOKEN) == "restored-token"


async def test_a_missing_key_names_the_secret_and_the_key(
    k8s: kmock.KubernetesEmulator, api: client.ApiClient
) -> None:
    put_secret(k8s, "first-token")
    secrets = KubernetesSecrets(api, ttl=TTL, clock=FakeClock())

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(SecretKey(namespace="ops", name="ingest-token", key="password"))

    assert str(raised.value) == "Secret ops/ingest-token has no key 'password' in Kubernetes"


async def test_a_forbidden_read_names_the_permission_the_service_lacks(
    k8s: kmock.KubernetesEmulator, api: client.ApiClient
) -> None:
    put_secret(k8s, "first-token")
    k8s["get", SECRETS] << 403
    secrets = KubernetesSecrets(api, ttl=TTL, clock=FakeClock())

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(TOKEN)

    message = str(raised.value)
    assert message.startswith(
        "Secret ops/ingest-token cannot be read: the Kubernetes API answered 403"
    )
    assert message.endswith("(this service's account needs `get` on secrets in ops)")


async def test_an_unreachable_api_is_unavailable_naming_the_secret() -> None:
    port = free_port()  # nothing listens there
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    async with client.ApiClient(configuration) as api:
        secrets = KubernetesSecrets(api, ttl=TTL, request_timeout=5.0, clock=FakeClock())

        with pytest.raises(SecretUnavailable) as raised:
            await secrets.resolve(TOKEN)

    assert str(raised.value).startswith(
        "Secret ops/ingest-token cannot be read: the Kubernetes API is unreachable"
    )


async def test_kubernetes_mode_wiring_reads_from_the_cluster_of_the_kubeconfig(
    k8s: kmock.KubernetesEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    put_secret(k8s, "first-token")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", k8s)))
    monkeypatch.setenv("VIGIL_SECRETS_FROM", "kubernetes")

    async with secret_resolver(SecretSettings()) as secrets:
        assert await secrets.resolve(TOKEN) == "first-token"
