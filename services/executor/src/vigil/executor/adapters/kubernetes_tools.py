"""The agent's cluster tools: `kubernetes` (read summaries of objects and events) and `logs`.

Only reading verbs exist here: get and list through kubernetes-asyncio, and the pod log.
Summaries keep what an investigation reads (phase, readiness, restarts, why a container
waits or last ended, replica counts, conditions, recent events), not whole manifests, so a
turn stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field

from vigil.executor.tools import ToolError

type Body = dict[str, Any]

EVENTS_SHOWN = 20
_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


class KubernetesArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["pods", "deployments", "replicasets", "nodes", "services", "events"]
    namespace: str | None = Field(default=None, description="Not for nodes.", max_length=63)
    name: str | None = Field(
        default=None, description="One object; omitted: list them.", max_length=253
    )


class LogsArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    pod: str = Field(min_length=1, max_length=253)
    container: str | None = Field(default=None, max_length=63)
    tail: int = Field(default=200, ge=1, le=2000, description="Last lines.")
    since_seconds: int | None = Field(default=None, ge=1, le=86_400)
    previous: bool = Field(default=False, description="The log of the previous container run.")


async def _read(call: Any, *args: Any, **kwargs: Any) -> Body:
    """The raw JSON of a read call (no model to fail on a field it does not know)."""
    try:
        response = await call(*args, _preload_content=False, **kwargs)
        try:
            body: Body = await response.json()
            status = response.status
        finally:
            response.release()
    except ApiException as exc:
        if exc.status == 404:
            raise ToolError("not found") from exc
        msg = f"Kubernetes API answered {exc.status}: {exc.reason}"
        raise ToolError(msg) from exc
    except _ERRORS as exc:
        msg = f"Kubernetes API unreachable: {exc}"
        raise ToolError(msg) from exc
    if status == 404:
        raise ToolError("not found")
    if status >= 400:
        msg = f"Kubernetes API answered {status}: {body.get('message', '')}"
        raise ToolError(msg)
    return body


def _pod(pod: Body) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    containers = status.get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    wanted = len(spec.get("containers") or containers)
    lines = [
        f"pod {meta.get('namespace')}/{meta.get('name')}: {status.get('phase', '?')}, "
        f"ready {ready}/{wanted}, node {spec.get('nodeName', '-')}"
    ]
    for container in containers:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        line = f"  container {container.get('name')}: restarts {container.get('restartCount', 0)}"
        if waiting:
            line += f", waiting {waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
        if "running" in state:
            line += ", running"
        if last:
            line += f", last ended {last.get('reason')} exit {last.get('exitCode')}"
        lines.append(line)
    lines += [_condition(c) for c in status.get("conditions") or [] if c.get("status") != "True"]
    return "\n".join(lines)


def _condition(condition: Body) -> str:
    line = f"  {condition.get('type')} {condition.get('status')}"
    return f"{line}: {condition.get('message', '')}".rstrip(": ")


def _deployment(item: Body) -> str:
    meta, spec, status = item.get("metadata", {}), item.get("spec", {}), item.get("status", {})
    line = (
        f"{item.get('kind', 'object').lower()} {meta.get('namespace')}/{meta.get('name')}: "
        f"desired {spec.get('replicas', '?')}, ready {status.get('readyReplicas', 0)}, "
        f"available {status.get('availableReplicas', 0)}, "
        f"updated {status.get('updatedReplicas', 0)}"
    )
    conditions = [
        f"  {c.get('type')} {c.get('status')}: {c.get('message', '')}".rstrip(": ")
        for c in status.get("conditions") or []
    ]
    return "\n".join([line, *conditions])


def _node(node: Body) -> str:
    meta, status = node.get("metadata", {}), node.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    pressure = [t for t, s in conditions.items() if t != "Ready" and s == "True"]
    allocatable = status.get("allocatable") or {}
    return (
        f"node {meta.get('name')}: Ready {conditions.get('Ready', '?')}, "
        f"pressure {', '.join(pressure) or 'none'}, allocatable cpu {allocatable.get('cpu', '?')} "
        f"memory {allocatable.get('memory', '?')}"
    )


def _service(service: Body) -> str:
    meta, spec = service.get("metadata", {}), service.get("spec", {})
    ports = ", ".join(
        f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []
    )
    return (
        f"service {meta.get('namespace')}/{meta.get('name')}: {spec.get('type', 'ClusterIP')} "
        f"{spec.get('clusterIP', '-')} ports {ports or '-'} selector {spec.get('selector') or {}}"
    )


def _event(event: Body) -> str:
    involved = event.get("involvedObject") or {}
    when = event.get("lastTimestamp") or event.get("eventTime") or ""
    about = f"{involved.get('kind')}/{involved.get('name')} x{event.get('count', 1)}"
    return f"{when} {event.get('type')} {event.get('reason')} {about}: {event.get('message', '')}"


SUMMARIES = {
    "pods": _pod,
    "deployments": _deployment,
    "replicasets": _deployment,
    "nodes": _node,
    "services": _service,
    "events": _event,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesTool:
    api: client.ApiClient
    name: str = "kubernetes"
    description: str = (
        "Read pods, deployments, replicasets, nodes, services or events: one by name, or a "
        "list of a namespace. Summaries, read-only."
    )
    arguments: type[BaseModel] = KubernetesArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, KubernetesArguments)
        if arguments.kind != "nodes" and not arguments.namespace:
            msg = f"{arguments.kind} live in a namespace: give `namespace`"
            raise ToolError(msg)
        items = await self._items(arguments)
        if arguments.kind == "events":
            if arguments.name:
                items = [
                    e
                    for e in items
                    if (e.get("involvedObject") or {}).get("name") == arguments.name
                ]
            items = sorted(items, key=lambda e: str(e.get("lastTimestamp") or ""))[-EVENTS_SHOWN:]
        summary = SUMMARIES[arguments.kind]
        return "\n".join(summary(item) for item in items) or f"no {arguments.kind} found"

    async def _items(self, arguments: KubernetesArguments) -> list[Body]:
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        namespace, name = arguments.namespace, arguments.name
        # An empty name means all of them (small models send `"name": ""`), as no name does.
        single = bool(name) and arguments.kind != "events"
        calls: dict[str, tuple[Any, Any]] = {
            "pods": (core.read_namespaced_pod, core.list_namespaced_pod),
            "deployments": (apps.read_namespaced_deployment, apps.list_namespaced_deployment),
            "replicasets": (apps.read_namespaced_replica_set, apps.list_namespaced_replica_set),
            "services": (core.read_namespaced_service, core.list_namespaced_service),
            "events": (None, core.list_namespaced_event),
        }
        if arguments.kind == "nodes":
            if single:
                return [await _read(core.read_node, name)]
            return list((await _read(core.list_node)).get("items") or [])
        read, listing = calls[arguments.kind]
        if single:
            return [await _read(read, name, namespace)]
        return list((await _read(listing, namespace)).get("items") or [])


@dataclass(frozen=True, slots=True, kw_only=True)
class LogsTool:
    api: client.ApiClient
    limit_bytes: int = 64 * 1024
    name: str = "logs"
    description: str = (
        "The last lines of a pod's log (one container; `previous` for the run before)."
    )
    arguments: type[BaseModel] = LogsArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, LogsArguments)
        options: dict[str, Any] = {
            "tail_lines": arguments.tail,
            "previous": arguments.previous,
            "limit_bytes": self.limit_bytes,
        }
        if arguments.container:
            options["container"] = arguments.container
        if arguments.since_seconds:
            options["since_seconds"] = arguments.since_seconds
        core = client.CoreV1Api(self.api)
        try:
            text: str = await core.read_namespaced_pod_log(
                arguments.pod, arguments.namespace, **options
            )
        except ApiException as exc:
            if exc.status == 404:
                msg = f"no pod {arguments.namespace}/{arguments.pod}"
                raise ToolError(msg) from exc
            msg = f"Kubernetes API answered {exc.status}: {exc.reason}"
            raise ToolError(msg) from exc
        except _ERRORS as exc:
            msg = f"Kubernetes API unreachable: {exc}"
            raise ToolError(msg) from exc
        return text or "(the log is empty)"
