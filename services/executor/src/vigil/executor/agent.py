"""The `StepRunner` of `agent` steps: an investigation with the configured models and tools.

The step's `tools` narrow the configured read-only tools (none named: all of them); its
`provider` narrows the models (`openai` for the OpenAI-compatible primary, `anthropic` for
the fallback) and its `model` replaces the configured model id. The wall-clock timeout and
a cancellation notice end the investigation where it is; what it found until then stays in
the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from vigil.common.errors import InvalidInput
from vigil.common.messages import AgentStep, StepRequest
from vigil.executor.domain.results import AgentOutcome
from vigil.executor.failover import Breaker, Failover
from vigil.executor.investigation import Budgets, Investigation, InvestigationFailed
from vigil.executor.models import ChatModel
from vigil.executor.tools import Tool, Toolbox

log = structlog.get_logger(__name__)

PROVIDER_PREFIXES = {"openai": "openai-compatible/", "anthropic": "anthropic/"}
NO_MODEL = (
    "no model is configured for agent steps: set VIGIL_EXECUTOR_AGENT_BASE_URL (an "
    "OpenAI-compatible server such as Ollama, with VIGIL_EXECUTOR_AGENT_MODEL) and/or "
    "VIGIL_EXECUTOR_ANTHROPIC_API_KEY (Claude, the fallback)"
)


def _no_step_tools(step: AgentStep) -> list[Tool]:
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRunner:
    models: Sequence[ChatModel]  # in order of preference
    tools: Sequence[Tool]
    # Tools made for the step itself (the runbook of its alert).
    step_tools: Callable[[AgentStep], Sequence[Tool]] = _no_step_tools
    tool_output_limit: int = 16 * 1024
    # Shared by every step this runner runs: models that keep failing are passed over.
    breaker: Breaker = field(default_factory=Breaker)

    async def run(self, request: StepRequest, cancel: asyncio.Event) -> AgentOutcome:
        step = request.agent
        if step is None:
            raise InvalidInput("agent step request without an `agent` body")
        models = self._models(step)
        if not models:
            return AgentOutcome(
                error=NO_MODEL if not self.models else f"no {step.provider} model is configured"
            )
        tools, unknown = self._tools(step)
        if unknown:
            known = ", ".join(sorted(t.name for t in self._configured(step))) or "none"
            return AgentOutcome(
                error=f"tools not configured here: {', '.join(unknown)} (configured: {known})"
            )
        investigation = Investigation(
            models=Failover(models=models, breaker=self.breaker),
            toolbox=Toolbox.of(tools, output_limit=self.tool_output_limit),
            budgets=Budgets(
                max_iterations=step.max_iterations, max_tokens=step.max_tokens, model=step.model
            ),
            output_schema=step.output_schema,
        )
        return await self._investigate(investigation, step, cancel)

    async def release(self, request: StepRequest) -> None:
        """An investigation holds nothing once it has ended."""

    def _models(self, step: AgentStep) -> list[ChatModel]:
        prefix = PROVIDER_PREFIXES.get(step.provider or "", "")
        return [m for m in self.models if m.name.startswith(prefix)]

    def _configured(self, step: AgentStep) -> list[Tool]:
        return [*self.tools, *self.step_tools(step)]

    def _tools(self, step: AgentStep) -> tuple[list[Tool], list[str]]:
        configured = self._configured(step)
        if not step.tools:
            return configured, []
        by_name = {tool.name: tool for tool in configured}
        unknown = [name for name in step.tools if name not in by_name]
        return [by_name[name] for name in step.tools if name in by_name], unknown

    async def _investigate(
        self, investigation: Investigation, step: AgentStep, cancel: asyncio.Event
    ) -> AgentOutcome:
        running = asyncio.ensure_future(investigation.run(step.goal))
        stopped = asyncio.ensure_future(cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {running, stopped}, timeout=step.timeout_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            stopped.cancel()
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        if running not in done:
            return _ended(investigation, cancelled=stopped in done, timed_out=stopped not in done)
        try:
            finding = running.result()
        except InvestigationFailed as exc:
            return _ended(investigation, error=str(exc))
        answer = {**investigation.extra, **finding.model_dump(mode="json", by_alias=True)}
        return _ended(investigation, finding=answer)


def _ended(
    investigation: Investigation,
    *,
    finding: dict[str, Any] | None = None,
    error: str | None = None,
    cancelled: bool = False,
    timed_out: bool = False,
) -> AgentOutcome:
    """The outcome, with what the investigation gathered until it ended."""
    return AgentOutcome(
        finding=finding,
        error=error,
        cancelled=cancelled,
        timed_out=timed_out,
        transcript=investigation.transcript,
        tokens=investigation.tokens,
        tool_calls=sum(1 for entry in investigation.transcript if entry["event"] == "tool"),
    )
