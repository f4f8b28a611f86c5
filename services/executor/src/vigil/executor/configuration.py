"""The agent step's models and tools as the settings configure them (for the executor and
for `vigil test`).

The models in order of preference: the OpenAI-compatible server
(`VIGIL_EXECUTOR_AGENT_BASE_URL`) first, Claude (`VIGIL_EXECUTOR_ANTHROPIC_API_KEY`) as the
fallback; with none configured an agent step fails at once saying how to configure one.
The tools: `dns` and `tcp_check` always, `http_get` (and each step's `runbook`) for the
allow-listed hosts; the executor adds `kubernetes` and `logs` where there is a cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

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
    """The network tools: `dns`, `tcp_check`, `http_get` for the allow-listed hosts, and
    `prometheus` where one is configured."""
    async with httpx.AsyncClient(headers={"User-Agent": "vigil-agent"}) as client:
        tools: list[Tool] = [
            Dns(),
            TcpCheck(),
            HttpGet(client=client, allowed_hosts=settings.agent_http_allowed_hosts),
        ]
        if settings.agent_prometheus_url:
            tools.append(PrometheusTool(client=client, url=settings.agent_prometheus_url))
        yield tools
