"""The agent step's tools that need more than a constructor: the cluster tools (an API
client) and the step's own `runbook` (its alert's URL, read like `http_get`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vigil.common.messages import AgentStep
from vigil.executor.adapters.network_tools import HttpGet, Runbook
from vigil.executor.tools import Tool


def cluster_tools(api: Any) -> list[Tool]:
    from vigil.executor.adapters.kubernetes_tools import KubernetesTool, LogsTool

    return [KubernetesTool(api=api), LogsTool(api=api)]


def step_tools(tools: Sequence[Tool]) -> Callable[[AgentStep], list[Tool]]:
    """The step's own `runbook` tool, reading its alert's runbook_url like `http_get`."""
    http = next((tool for tool in tools if isinstance(tool, HttpGet)), None)

    def made(step: AgentStep) -> list[Tool]:
        if http is None:
            return []
        return [Runbook(client=http.client, url=step.runbook_url, allowed_hosts=http.allowed_hosts)]

    return made
