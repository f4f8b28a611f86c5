"""The Kubernetes API for the controller: kopf watches, kubernetes-asyncio writes.

kopf lists and watches Sources, Workflows, Sinks and Secrets (relisting, reconnecting and
retrying are its job), in a thread of its own, and hands every event to
`ClusterDefinitions.on_event` on the service's loop. Status is
written here through kubernetes-asyncio rather than through kopf's per-handler `patch`:
readiness crosses objects (a Sink's Secret appearing makes a Workflow ready), so the
object whose status changes is often not the one whose event arrived. A full listing seeds
the snapshot before the first reconcile, so definitions are never published from half a
cluster. Connection settings come from `KUBECONFIG` or the pod's service account, one
source for both libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from vigil.common.errors import NotFound, TransientError
from vigil.controller.cluster import ClusterDefinitions
from vigil.controller.reconciling import Body, Key

log = structlog.get_logger(__name__)

GROUP, VERSION = "vigil.dev", "v1alpha1"
PLURALS = {"Source": "sources", "Workflow": "workflows", "Sink": "sinks"}
_API_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
KOPF_STOP_SECONDS = 10.0
# A dict body is a JSON merge patch; the client would otherwise send it as a JSON patch.
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


def connection_info(api: client.ApiClient) -> kopf.ConnectionInfo:
    """kopf's login, from the same configuration as the kubernetes-asyncio client."""
    configuration = api.configuration
    token = (configuration.api_key or {}).get("authorization", "")
    return kopf.ConnectionInfo(
        server=configuration.host or "",
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme="Bearer" if token else None,
        token=token.removeprefix("Bearer ") or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def _translated(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, ApiException) and exc.status == 404:
        return NotFound(f"{what}: not found")
    status = exc.status if isinstance(exc, ApiException) else type(exc).__name__
    return TransientError(f"{what}: Kubernetes API answered {status}")


class KubernetesStatusWriter:
    """The controller's `StatusWriter`: merge patches of `status`, Warning Events."""

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    async def patch_status(self, key: Key, patch: Body) -> Body:
        kind, namespace, name = key
        try:
            updated = await self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
                {"status": patch},
                **MERGE_PATCH,
            )
        except _API_ERRORS as exc:
            raise _translated(exc, f"status of {kind} {namespace}/{name}") from exc
        status: Body = updated.get("status") or {}
        return status

    async def warn(self, key: Key, body: Body, *, reason: str, message: str) -> None:
        kind, namespace, name = key
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{name}.{uuid.uuid4().hex[:10]}"),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=kind,
                name=name,
                namespace=namespace,
                uid=body.get("metadata", {}).get("uid"),
                resource_version=body.get("metadata", {}).get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="vigil-controller"),
            reporting_component="vigil-controller",
        )
        try:
            await self._core.create_namespaced_event(namespace, event)
        except _API_ERRORS as exc:  # an Event is best effort: the status says it too
            log.warning("event_not_recorded", object=f"{kind} {namespace}/{name}", error=str(exc))


async def list_everything(api: client.ApiClient, namespaces: Sequence[str]) -> list[Body]:
    """Every Source, Workflow, Sink and Secret the controller watches, as plain bodies."""
    objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    bodies: list[Body] = []
    scopes: list[str | None] = list(namespaces) or [None]
    try:
        for kind, plural in PLURALS.items():
            for namespace in scopes:
                listed: dict[str, Any] = await (
                    objects.list_cluster_custom_object(GROUP, VERSION, plural)
                    if namespace is None
                    else objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
                )
                bodies += [{"kind": kind, **item} for item in listed.get("items", [])]
        for namespace in scopes:
            secrets = await (
                core.list_secret_for_all_namespaces()
                if namespace is None
                else core.list_namespaced_secret(namespace)
            )
            bodies += [
                {**api.sanitize_for_serialization(item), "kind": "Secret"} for item in secrets.items
            ]
    except _API_ERRORS as exc:
        raise _translated(exc, "listing the definitions") from exc
    return bodies


type Deliver = Callable[[str | None, Body], None]


def registry_for(deliver: Deliver, api: client.ApiClient) -> kopf.OperatorRegistry:
    """kopf's handlers: every event of the four kinds goes to `deliver`."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api)

    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        deliver(event["type"], dict(event["object"]))

    async def on_secret(event: kopf.RawEvent, **_: Any) -> None:
        deliver(event["type"], {**event["object"], "kind": "Secret"})

    for plural in PLURALS.values():
        kopf.on.event(GROUP, VERSION, plural, registry=registry)(on_event)
    kopf.on.event("", "v1", "secrets", registry=registry)(on_secret)
    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # the resources are known: no CRD or namespace watch
    settings.posting.enabled = False  # our Events are written by KubernetesStatusWriter
    settings.process.ultimate_exiting_timeout = None
    return settings


async def watch(
    cluster: ClusterDefinitions, api: client.ApiClient, namespaces: Sequence[str]
) -> None:
    """Run kopf's watches until cancelled, in a thread with an event loop of its own.

    Embedded in the service's loop, kopf would take over SIGTERM and SIGINT and, when it
    stops, cancel every task started after it (the service's own). In its own thread it
    only watches; its events reach `cluster` on the service's loop.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def deliver(kind: str | None, body: Body) -> None:
        loop.call_soon_threadsafe(cluster.on_event, kind, body)

    def operate() -> None:
        asyncio.run(
            kopf.operator(
                registry=registry_for(deliver, api),
                settings=operator_settings(),
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                standalone=True,
                stop_flag=stop,
            )
        )

    operator = loop.run_in_executor(None, operate)
    try:
        await asyncio.shield(operator)
    except asyncio.CancelledError:
        stop.set()  # kopf ends its watches itself; its thread cannot be cancelled
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(operator), timeout=KOPF_STOP_SECONDS)
        raise
    msg = "the Kubernetes watches stopped on their own"
    raise TransientError(msg)  # the service exits, and is restarted
