"""The `kmock` Kubernetes API emulator, made to answer as an API server does for Vigil.

kmock 0.8 stores what a client sends as it is; a real API server also sets
`metadata.namespace`, `uid`, `resourceVersion`, `creationTimestamp` and a name for
`generateName`, answers 201 to a create, and accepts `watch=True` (how kubernetes-asyncio
spells it). `VigilApiServer` adds those, and `declare` puts the three kinds, pods (with
`status` and `log`), Secrets, Events and namespaces (kopf waits for it) into discovery.

Suites import the `kmock_options` override and the `k8s` fixture into their conftest, and
point the controller or the executor at it with `kubeconfig()` (a file for `KUBECONFIG`).
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest
import yaml
from kmock import KubernetesError

VIGIL = {"sources": "Source", "workflows": "Workflow", "sinks": "Sink"}
CORE = {"pods": "Pod", "secrets": "Secret", "events": "Event"}
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


class VigilApiServer(kmock.KubernetesEmulator):
    """kmock plus what a real API server does on create and for `watch=True`."""

    _versions = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.action == kmock.action.LIST and request.params.get("watch", "").lower() in {
            "true",
            "1",
        }:
            object.__setattr__(request, "action", kmock.action.WATCH)  # the Request is frozen
        data = request.data
        if (
            request.resource is not None
            and isinstance(data, dict)
            and request.action == kmock.action.CREATE
        ):
            meta = data.setdefault("metadata", {})
            if request.namespace:
                meta.setdefault("namespace", request.namespace)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            )
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = str(next(self._versions))
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)
        return response


def declare(server: kmock.KubernetesEmulator) -> None:
    for plural, kind in VIGIL.items():
        server.resources[f"vigil.dev/v1alpha1/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=True, verbs=VERBS, subresources={"status"}
        )
    for plural, kind in CORE.items():
        server.resources[f"v1/{plural}"] = kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=True,
            verbs=VERBS,
            subresources={"status", "log"} if plural == "pods" else set(),
        )
    for plural, kind in (("deployments", "Deployment"), ("replicasets", "ReplicaSet")):
        server.resources[f"apps/v1/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=True, verbs=VERBS
        )
    server.resources["v1/services"] = kmock.ResourceInfo(
        kind="Service", singular="service", namespaced=True, verbs=VERBS
    )
    for plural, kind in (("namespaces", "Namespace"), ("nodes", "Node")):
        server.resources[f"v1/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=False, verbs=VERBS
        )


def closing_client(base_url: Any) -> aiohttp.ClientSession:
    """kmock's own client without idle keep-alive connections (kopf waits 5 s for those)."""
    return aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(force_close=True))


def kubeconfig(path: Path, server: kmock.KubernetesEmulator) -> Path:
    """A kubeconfig file pointing at `server`, for `KUBECONFIG`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(server.url)}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    """kmock's plugin builds `VigilApiServer`, with a client that keeps no idle connection."""
    return {**kmock_options, "cls": VigilApiServer, "client_fct": closing_client}


@pytest.fixture
async def k8s(kmock: kmock.KubernetesEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    """The API server, declared; fails the test if it met an error it did not mean."""
    declare(kmock)
    yield kmock
    # kmock records the 404/409 it answered on purpose; anything else is a bug.
    unexpected = [e for e in kmock.errors if not isinstance(e, KubernetesError)]
    assert not unexpected, unexpected


def custom_resource(text: str) -> dict[str, Any]:
    body = yaml.safe_load(text)
    assert isinstance(body, dict)
    return body


# --- playing the kubelet ------------------------------------------------------------------


def container_status(state: dict[str, Any], *, image: str = "busybox:1.37") -> dict[str, Any]:
    """The status of a step pod's container as a kubelet writes it."""
    return {
        "name": "step",
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


def exited(code: int) -> dict[str, Any]:
    """A pod whose step container exited with `code`."""
    return {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [container_status({"terminated": {"exitCode": code}})],
    }


def waiting(reason: str, message: str) -> dict[str, Any]:
    """A pod whose step container waits for `reason` (an image pull, a bad config)."""
    return {
        "phase": "Pending",
        "containerStatuses": [
            container_status({"waiting": {"reason": reason, "message": message}})
        ],
    }


async def kubelet_sets(
    server: kmock.KubernetesEmulator, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """What a kubelet does: write the pod's status through the API, so watchers see it."""
    async with server.patch(
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        json={"status": status},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 200, await response.text()
