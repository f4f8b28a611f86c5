"""The agent step's models and tools as the settings configure them (for the executor and
for `vigil test`).

The models in order of preference: the OpenAI-compatible server
(`VIGIL_EXECUTOR_AGENT_BASE_URL`) first, Claude (`VIGIL_EXECUTOR_ANTHROPIC_API_KEY`) as the
fallback; with none configured an agent step fails at once saying how to configure one.
The tools: `dns` and `tcp_check` always, `http_get` (and each step's `runbook`) where hosts
are allow-listed; the executor adds `kubernetes` and `logs` where there is a cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from vigil.executor.adapters.agents import cluster_tools
from vigil.executor.adapters.network_tools import Dns, HttpGet, PrometheusTool, TcpCheck
from vigil.executor.models import ChatModel
from vigil.executor.settings import ExecutorSettings
from vigil.executor.tools import Tool


@contextlib.asynccontextmanager
async def configured_models(settings: ExecutorSettings) -> AsyncIterator[list[ChatModel]]:
    # The SDKs are imported only when configured: together they cost seconds of start-up.
    primary: ChatModel | None = None
    fallback: ChatModel | None = None
    if settings.agent_base_url:
        from vigil.executor.adapters.openai_chat import OpenAIChatModel

        key = settings.agent_api_key.get_secret_value() if settings.agent_api_key else "none"
        primary = OpenAIChatModel(
            base_url=settings.agent_base_url,
            model=settings.agent_model,
            api_key=key,
            timeout=settings.agent_request_timeout_seconds,
        )
    if settings.anthropic_api_key:
        from vigil.executor.adapters.anthropic_chat import AnthropicChatModel

        fallback = AnthropicChatModel(
            model=settings.anthropic_model,
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=settings.agent_request_timeout_seconds,
        )
    try:
        yield [model for model in (primary, fallback) if model is not None]
    finally:
        for model in (primary, fallback):
            if model is not None:
                await model.close()


@contextlib.asynccontextmanager
async def configured_tools(settings: ExecutorSettings) -> AsyncIterator[list[Tool]]:
    """The network tools: `dns`, `tcp_check`, `http_get` (and each step's `runbook`) where
    hosts are allow-listed, and `prometheus` where one is configured."""
    async with httpx.AsyncClient(headers={"User-Agent": "vigil-agent"}) as client:
        tools: list[Tool] = [Dns(), TcpCheck()]
        if settings.agent_http_allowed_hosts:  # with no host allowed, every call is refused
            tools.append(HttpGet(client=client, allowed_hosts=settings.agent_http_allowed_hosts))
        if settings.agent_prometheus_url:
            tools.append(PrometheusTool(client=client, url=settings.agent_prometheus_url))
        yield tools


def wants_cluster_tools(settings: ExecutorSettings) -> bool:
    """Agents get `kubernetes` and `logs` when asked to, by default in Kubernetes mode."""
    if settings.agent_kubernetes_tools is not None:
        return settings.agent_kubernetes_tools
    return settings.runner == "kubernetes"


@contextlib.asynccontextmanager
async def cluster_api(settings: ExecutorSettings) -> AsyncIterator[Any | None]:
    """The Kubernetes API client (the kubeconfig of `KUBECONFIG`, else the pod's service
    account) where cli steps run as pods or agents read the cluster; else None."""
    if settings.runner != "kubernetes" and not wants_cluster_tools(settings):
        yield None
        return
    from vigil.common.adapters.kubernetes import api_client

    async with api_client() as api:
        yield api


@contextlib.asynccontextmanager
async def agent_tools(settings: ExecutorSettings, api: Any | None) -> AsyncIterator[list[Tool]]:
    """Every tool the settings configure: the network tools, and the cluster tools where
    `wants_cluster_tools` and there is an API client."""
    async with configured_tools(settings) as network:
        cluster = cluster_tools(api) if api is not None and wants_cluster_tools(settings) else []
        yield [*network, *cluster]
