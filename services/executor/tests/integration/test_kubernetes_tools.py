"""The agent's cluster tools against kmock: the summaries an investigation reads, the
errors it gets back, and that reading is all they do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kubernetes_asyncio import client

from vigil.executor.adapters.kubernetes_tools import (
    KubernetesArguments,
    KubernetesTool,
    LogsArguments,
    LogsTool,
)
from vigil.executor.tools import ToolError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CRASHING_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "api-7f9c", "namespace": "shop"},
    "spec": {"nodeName": "node-1", "containers": [{"name": "api", "image": "shop/api:1.4"}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "api",
                "image": "shop/api:1.4",
                "imageID": "",
                "ready": False,
                "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ],
        "conditions": [{"type": "Ready", "status": "False", "message": "containers not ready"}],
    },
}


@pytest.fixture
async def api(k8s: kmock.KubernetesEmulator) -> AsyncIterator[client.ApiClient]:
    k8s.objects["v1/pods", "shop", "api-7f9c"] = CRASHING_POD
    k8s.objects["apps/v1/deployments", "shop", "api"] = {
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 3},
    }
    k8s.objects["v1/nodes", None, "node-1"] = {
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "True"},
            ],
            "allocatable": {"cpu": "4", "memory": "16Gi"},
        },
    }
    for n, (name, reason) in enumerate([("api-7f9c", "BackOff"), ("db-0", "Pulled")]):
        k8s.objects["v1/events", "shop", f"e{n}"] = {
            "metadata": {"name": f"e{n}", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": name},
            "type": "Warning" if reason == "BackOff" else "Normal",
            "reason": reason,
            "message": f"{reason} happened",
            "count": 3,
            "lastTimestamp": f"2026-12-01T06:0{n}:00Z",
        }
    async with client.ApiClient(client.Configuration(host=str(k8s.url))) as http:
        yield http


async def test_a_pod_summary_says_why_it_crashes(api: client.ApiClient) -> None:
    tool = KubernetesTool(api=api)
    summary = await tool(KubernetesArguments(kind="pods", namespace="shop", name="api-7f9c"))
    assert summary.splitlines() == [
        "pod shop/api-7f9c: Running, ready 0/1, node node-1",
        "  container api: restarts 7, waiting CrashLoopBackOff: back-off 5m0s, "
        "last ended OOMKilled exit 137",
        "  Ready False: containers not ready",
    ]
    listed = await tool(KubernetesArguments(kind="pods", namespace="shop"))
    assert listed.startswith("pod shop/api-7f9c")


async def test_deployments_nodes_and_events_are_summarised(api: client.ApiClient) -> None:
    tool = KubernetesTool(api=api)
    deployment = await tool(KubernetesArguments(kind="deployments", namespace="shop", name="api"))
    assert deployment == "deployment shop/api: desired 3, ready 2, available 2, updated 3"
    node = await tool(KubernetesArguments(kind="nodes", name="node-1"))
    assert node == (
        "node node-1: Ready True, pressure MemoryPressure, allocatable cpu 4 memory 16Gi"
    )
    events = await tool(KubernetesArguments(kind="events", namespace="shop", name="api-7f9c"))
    assert events == "2026-12-01T06:00:00Z Warning BackOff Pod/api-7f9c x3: BackOff happened"


async def test_an_empty_name_lists_as_no_name_does(api: client.ApiClient) -> None:
    """A small model sends `"name": ""` for "all of them": a list, not a read of `.../nodes/`."""
    tool = KubernetesTool(api=api)
    nodes = await tool(KubernetesArguments(kind="nodes", name=""))
    assert nodes.startswith("node node-1: Ready True")
    pods = await tool(KubernetesArguments(kind="pods", namespace="shop", name=""))
    assert pods.startswith("pod shop/api-7f9c")


async def test_missing_objects_and_namespaces_are_tool_errors(api: client.ApiClient) -> None:
    tool = KubernetesTool(api=api)
    with pytest.raises(ToolError, match="not found"):
        await tool(KubernetesArguments(kind="pods", namespace="shop", name="nope"))
    with pytest.raises(ToolError, match="give `namespace`"):
        await tool(KubernetesArguments(kind="pods"))


async def test_the_log_is_read_bounded_and_only_read(
    api: client.ApiClient, k8s: kmock.KubernetesEmulator
) -> None:
    k8s["get", kmock.resource("v1/pods"), kmock.subresource("log")] << b"OOM: killed\n"
    tool = LogsTool(api=api, limit_bytes=4096)
    text = await tool(LogsArguments(namespace="shop", pod="api-7f9c", tail=50, previous=True))
    assert text == "OOM: killed\n"
    (read,) = k8s["get", kmock.resource("v1/pods"), kmock.subresource("log")]
    assert read.params == {"tailLines": "50", "previous": "True", "limitBytes": "4096"}
    agent_requests = [r for r in k8s if r.headers.get("User-Agent", "").startswith("OpenAPI")]
    assert {r.method.value for r in agent_requests} == {"GET"}, "no verb but GET, ever"


async def test_the_log_of_a_pod_that_does_not_exist_is_a_tool_error(api: client.ApiClient) -> None:
    with pytest.raises(ToolError, match="no pod shop/ghost"):
        await LogsTool(api=api)(LogsArguments(namespace="shop", pod="ghost"))
