"""`vigil test`: run one workflow locally against the alerts of a payload, sending nothing.

The engine's own state machine drives the run (same matching, templating, CEL and step
order as production), on a virtual clock so that waits and retry backoff take no time.
`cli` steps run for real through the executor's local runner unless `--dry-run`, in which
case their rendered argv is shown and their output is empty, or read from
`--step-output NAME=FILE` (`DryRunRunner`). Either way the executor's own mapping turns
what the runner reports into the step's result. Notifications are rendered and shown,
never sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from vigil.common.alertmanager import WebhookAlert, WebhookPayload
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution
from vigil.common.errors import InvalidInput
from vigil.common.messages import (
    Alert,
    AlertReceived,
    Group,
    StepRequest,
    StepResult,
)
from vigil.common.resources import Workflow
from vigil.common.validation import format_validation_error, read_documents, validate_documents
from vigil.engine.domain.machine import advance, apply_result, new_execution, on_timer
from vigil.engine.domain.matching import match, trigger_key
from vigil.executor.adapters.agents import step_tools
from vigil.executor.adapters.local import LocalProcessRunner
from vigil.executor.agent import AgentRunner
from vigil.executor.configuration import agent_tools, cluster_api, configured_models
from vigil.executor.domain.results import ProcessOutcome, RunOutcome, step_result
from vigil.executor.runners import StepRunner
from vigil.executor.settings import ExecutorSettings

OUTPUT_LIMIT = 64 * 1024
MAX_TRANSITIONS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialOptions:
    definitions: Path
    workflow: str
    alert_file: Path
    dry_run: bool
    step_outputs: dict[str, Path]
    source: str | None


def load_alerts(path: Path) -> tuple[list[Alert], Group]:
    """Every alert of an Alertmanager payload, or the one alert of a single alert body."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"{path}: cannot read a JSON alert: {exc}"
        raise InvalidInput(msg) from exc
    try:
        if isinstance(document, dict) and "alerts" in document:
            payload = WebhookPayload.model_validate(document)
            items, group = payload.alerts, Group.from_webhook(payload)
        else:
            body = {"status": "firing", "startsAt": datetime.now(UTC).isoformat(), **document}
            items, group = [WebhookAlert.model_validate(body)], Group()
    except (ValidationError, TypeError) as exc:
        detail = format_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        msg = f"{path}: not an Alertmanager payload nor a single alert: {detail}"
        raise InvalidInput(msg) from exc
    return [Alert.from_webhook(item) for item in items], group


def load_workflow(definitions: Path, reference: str) -> Workflow:
    namespace, _, name = reference.rpartition("/")
    if not namespace or not name:
        msg = f"--workflow {reference!r} must be NAMESPACE/NAME"
        raise InvalidInput(msg)
    documents, errors = read_documents(definitions)
    report = validate_documents(documents)
    view = DefinitionsView()
    for definition in report.definitions:
        view.add(definition)
    workflow = view.workflow(namespace, name)
    if workflow is None:
        problems = [p for p in [*errors, *report.problems()] if f"{namespace}/{name}" in p]
        detail = "; ".join(problems) or "no such Workflow in the definitions"
        msg = f"workflow {reference}: {detail}"
        raise InvalidInput(msg)
    return workflow


@dataclass(frozen=True, slots=True, kw_only=True)
class DryRunRunner:
    """A `StepRunner` that runs nothing: stdout from `--step-output NAME=FILE`, or empty."""

    step_outputs: dict[str, Path]

    async def run(self, request: StepRequest, cancel: asyncio.Event) -> ProcessOutcome:
        given = self.step_outputs.get(request.step)
        stdout = given.read_text(encoding="utf-8") if given else ""
        return ProcessOutcome(exit_code=0, stdout=stdout)

    async def release(self, request: StepRequest) -> None:
        """Nothing ran."""


class Trial:
    def __init__(self, options: TrialOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.agent: AgentRunner | None = None
        self.runner: StepRunner = (
            DryRunRunner(step_outputs=options.step_outputs)
            if options.dry_run
            else LocalProcessRunner(output_limit=OUTPUT_LIMIT)
        )

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    async def run(self) -> int:
        # cli steps stay local processes here, whatever VIGIL_EXECUTOR_RUNNER says.
        settings = ExecutorSettings().model_copy(update={"runner": "local"})
        async with (
            configured_models(settings) as models,
            cluster_api(settings) as api,
            agent_tools(settings, api) as tools,
        ):
            # Agent steps ask the models and use the tools the executor would
            # (VIGIL_EXECUTOR_AGENT_*, VIGIL_EXECUTOR_ANTHROPIC_*); without a model they fail
            # saying how to configure one.
            self.agent = AgentRunner(models=models, tools=tools, step_tools=step_tools(tools))
            return await self._run()

    async def _run(self) -> int:
        workflow = load_workflow(self.options.definitions, self.options.workflow)
        alerts, group = load_alerts(self.options.alert_file)
        source = self.options.source or (workflow.spec.trigger.sources or ["test"])[0]
        failures = 0
        for number, alert in enumerate(alerts, start=1):
            name = alert.labels.get("alertname", alert.fingerprint)
            self.say(f"alert {number}/{len(alerts)}: {name} {alert.status} {alert.labels}")
            received = AlertReceived(
                namespace=workflow.metadata.namespace,
                source=source,
                received_at=datetime.now(UTC),
                alert=alert,
                group=group,
            )
            verdict = match(workflow, received)
            if not verdict.matched:
                self.say(f"  not matched: {verdict.reason}")
                continue
            self.say(f"  matched {workflow.ref}")
            execution = await self.execute(workflow, received)
            failures += execution.state != "succeeded"
            self.report(execution)
        return 1 if failures else 0

    async def execute(self, workflow: Workflow, received: AlertReceived) -> Execution:
        now = received.received_at
        execution = new_execution(
            execution_id=f"test-{received.alert.fingerprint}",
            workflow=workflow,
            received=received,
            trigger_key=trigger_key(workflow, received),
            concurrency_key=received.alert.fingerprint,
            now=now,
        )
        transition = advance(execution, workflow, now=now)
        for _ in range(MAX_TRANSITIONS):
            execution = transition.execution
            if execution.finished:
                break
            if transition.dispatch:
                request = transition.dispatch[0]
                result = await self.perform(request, now)
                now = result.finished_at
                transition = apply_result(execution, workflow, result, now=now)
            elif execution.wake_at is not None:
                now = max(now, execution.wake_at)  # virtual clock: waits take no time
                transition = on_timer(execution, workflow, now=now)
            else:
                break
        return transition.execution

    async def perform(self, request: StepRequest, now: datetime) -> StepResult:
        later = now + timedelta(milliseconds=1)
        if request.notify is not None:
            notify = request.notify
            self.say(f"  notify {request.step} -> {', '.join(notify.sinks)} (not sent)")
            self.say(f"    title:   {notify.title}")
            for line in notify.message.splitlines() or [""]:
                self.say(f"    message: {line}")
            return StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                outcome="succeeded",
                output={
                    "deliveries": [
                        {"sink": sink, "status": "not sent (vigil test)", "id": None}
                        for sink in notify.sinks
                    ]
                },
                started_at=now,
                finished_at=later,
            )
        outcome: RunOutcome
        if request.agent is not None:
            self.say(f"  agent {request.step} (attempt {request.attempt}): {request.agent.goal}")
            assert self.agent is not None, "set by run()"
            outcome = await self.agent.run(request, asyncio.Event())
        else:
            assert request.cli is not None
            argv = request.cli.argv
            self.say(f"  cli {request.step} (attempt {request.attempt}): {json.dumps(argv)}")
            outcome = await self.runner.run(request, asyncio.Event())
        settled = step_result(
            request, outcome, started_at=now, finished_at=later, output_limit=OUTPUT_LIMIT
        )
        return settled.result

    def report(self, execution: Execution) -> None:
        for step in execution.steps:
            shown = _short(step.output)
            error = f" error: {step.error}" if step.error and step.state != "succeeded" else ""
            self.say(f"    {step.name:<16} {step.state:<10} {shown}{error}")
        suffix = f": {execution.error}" if execution.error else ""
        self.say(f"  execution {execution.state}{suffix}")


def _short(output: dict[str, Any] | None) -> str:
    if output is None:
        return ""
    text = json.dumps(output)
    return text if len(text) <= 160 else text[:157] + "..."


def parse_step_outputs(values: list[str]) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not name or not file:
            msg = f"--step-output {value!r} must be NAME=FILE"
            raise InvalidInput(msg)
        if not Path(file).is_file():
            msg = f"--step-output {value!r}: {file} is not a file"
            raise InvalidInput(msg)
        outputs[name] = Path(file)
    return outputs


def trial(options: TrialOptions) -> int:
    try:
        return asyncio.run(Trial(options, sys.stdout).run())
    except InvalidInput as exc:
        sys.stderr.write(f"vigil test: {exc}\n")
        return 2
