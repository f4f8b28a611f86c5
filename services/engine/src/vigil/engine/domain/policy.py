"""Whether a matched alert starts an execution: cooldown and the concurrency policy (pure).

`admit` sees what the store knows about the alert's concurrency key (the newest execution,
the unfinished ones) and answers `Start`, `Suppress` (cooldown, or `Forbid` while one runs)
or `Replace` (cancel the unfinished ones, then start). The admission handler
(`vigil.engine.admission`) does the reads and the writes around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from vigil.common.documents import Execution
from vigil.common.durations import parse_duration
from vigil.common.messages import AlertReceived
from vigil.common.resources import Workflow
from vigil.common.templating import render
from vigil.engine.domain.context import alert_context


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Create the execution; `exclusive_key` is set under `Forbid`/`Replace`."""

    exclusive_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppress:
    reason: Literal["cooldown", "forbid"]
    running: str | None = None  # under `Forbid`: the execution that holds the key


@dataclass(frozen=True, slots=True, kw_only=True)
class Replace:
    """Cancel these unfinished executions of the key, then start (`exclusive_key` as Start)."""

    cancel: tuple[Execution, ...]
    exclusive_key: str


type Admission = Start | Suppress | Replace


def is_guarded(workflow: Workflow) -> bool:
    """Does starting depend on other executions (cooldown or a policy other than Allow)?"""
    spec = workflow.spec
    return bool(spec.cooldown) or spec.concurrency.policy != "Allow"


def concurrency_key(workflow: Workflow, received: AlertReceived) -> str:
    """The workflow's `concurrency.key` rendered for this alert (default: its fingerprint)."""
    template = workflow.spec.concurrency.key
    if template is None:
        return received.alert.fingerprint
    return render(template, alert_context(received, workflow))


def admit(
    workflow: Workflow,
    *,
    key: str,
    received_at: datetime,
    newest: Execution | None,
    unfinished: Sequence[Execution],
) -> Admission:
    """Decide for an alert received at `received_at` whose concurrency key is `key`.

    `newest` is the newest execution of the workflow for the key (for the cooldown),
    `unfinished` the ones still pending or running (for the policy).
    """
    spec = workflow.spec
    if spec.cooldown and newest is not None:
        cooldown = timedelta(seconds=parse_duration(spec.cooldown))
        if newest.created_at + cooldown > received_at:
            return Suppress(reason="cooldown")
    policy = spec.concurrency.policy
    if policy == "Allow":
        return Start()
    exclusive = f"{workflow.ref}/{key}"
    if not unfinished:
        return Start(exclusive_key=exclusive)
    if policy == "Forbid":
        return Suppress(reason="forbid", running=unfinished[0].id)
    return Replace(cancel=tuple(unfinished), exclusive_key=exclusive)
