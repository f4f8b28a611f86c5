"""The world a scenario's investigation reads: its cluster in kmock, its pod logs (with the
planted instructions), its recorded Prometheus, and the agent's real tools pointed at them.

Every request that reached the cluster is kept, so a check can show that nothing but
reads arrived."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp.web
import httpx
import kmock
from kubernetes_asyncio import client

from evals.scenario import Scenario
from tests.support.kubernetes import VigilApiServer, declare
from vigil.executor.adapters.kubernetes_tools import KubernetesTool, LogsTool
from vigil.executor.adapters.network_tools import PrometheusTool
from vigil.executor.tools import Tool

_PLURALS = {
    "Pod": "v1/pods",
    "Service": "v1/services",
    "Event": "v1/events",
    "Node": "v1/nodes",
    "Deployment": "apps/v1/deployments",
    "ReplicaSet": "apps/v1/replicasets",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    tools: list[Tool]
    cluster: kmock.KubernetesEmulator
    prometheus_queries: list[str]

    def cluster_requests(self) -> list[tuple[str, str]]:
        """(HTTP method, path) of every request the cluster got."""
        return [(str(r.method.value).upper(), str(r.url.path)) for r in self.cluster]


def _logs(scenario: Scenario) -> dict[str, str]:
    logs = dict(scenario.logs)
    planted = scenario.injection
    logs[planted.into] = logs.get(planted.into, "") + planted.text.rstrip("\n") + "\n"
    return logs


def _recorded_prometheus(scenario: Scenario, asked: list[str]) -> aiohttp.web.Application:
    async def query(request: aiohttp.web.Request) -> aiohttp.web.Response:
        promql = request.query.get("query", "")
        asked.append(promql)
        ranged = request.path.endswith("query_range")
        for recorded in scenario.prometheus:
            if all(part in promql for part in recorded.match):
                result = recorded.result
                if ranged:  # a recorded instant answer, held flat over the range
                    result = [
                        {"metric": s["metric"], "values": s.get("values") or [s["value"]] * 3}
                        for s in result
                    ]
                kind = "matrix" if ranged else recorded.result_type
                return aiohttp.web.json_response(
                    {"status": "success", "data": {"resultType": kind, "result": result}}
                )
        if not re.fullmatch(r"[\w\s\[\]{}()=~!\",.:*/+<>\-|^]+", promql):
            return aiohttp.web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400
            )
        kind = "matrix" if ranged else "vector"
        return aiohttp.web.json_response(
            {"status": "success", "data": {"resultType": kind, "result": []}}
        )

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/query", query)
    app.router.add_get("/api/v1/query_range", query)
    return app


@contextlib.asynccontextmanager
async def world(scenario: Scenario) -> AsyncIterator[World]:
    asked: list[str] = []
    runner = aiohttp.web.AppRunner(_recorded_prometheus(scenario, asked), access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with VigilApiServer() as cluster, kmock.Server(cluster):
            declare(cluster)
            for item in scenario.cluster:
                meta = item["metadata"]
                key = (_PLURALS[item["kind"]], meta.get("namespace"), meta["name"])
                cluster.objects[key] = item
            for where, text in _logs(scenario).items():
                namespace, pod = where.split("/")
                (
                    cluster[
                        "get",
                        kmock.resource("v1/pods"),
                        kmock.namespace(namespace),
                        kmock.name(pod),
                        kmock.subresource("log"),
                    ]
                    << text.encode()
                )
            config = client.Configuration(host=str(cluster.url))
            async with client.ApiClient(config) as api, httpx.AsyncClient() as http:
                tools: dict[str, Tool] = {
                    "kubernetes": KubernetesTool(api=api),
                    "logs": LogsTool(api=api),
                    "prometheus": PrometheusTool(client=http, url=f"http://127.0.0.1:{port}"),
                }
                yield World(
                    tools=[tools[name] for name in scenario.tools],
                    cluster=cluster,
                    prometheus_queries=asked,
                )
    finally:
        await runner.cleanup()
