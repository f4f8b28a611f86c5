"""Operator commands (`Commands.on_cancel`, `on_run`) through the shipped fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.definitions import workflow
from tests.support.engine import running_engine
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, CancelRequested, RunRequested, StepCancelled
from vigil.common.testing import EPOCH, delivery
from vigil.engine.commands import Commands

WORKFLOW = workflow("disk", '- {name: measure, cli: {command: ["df"], timeout: 30s}}')


def run_command(workflow: str = "disk", execution_id: str = "01MANUAL") -> RunRequested:
    return RunRequested(
        execution_id=execution_id,
        namespace="ops",
        workflow=workflow,
        alert=Alert.model_validate(
            {
                "status": "firing",
                "fingerprint": "manual-1",
                "labels": {"alertname": "DiskFull"},
                "startsAt": "2026-01-01T00:00:00Z",
            }
        ),
        requested_at=EPOCH,
    )


async def test_cancel_stops_the_running_step_and_finishes_the_execution(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        execution = await engine.only_execution()
        command = CancelRequested(
            execution_id=execution.id, reason="by hand", requested_at=engine.clock.now()
        )

        await engine.commands.on_cancel(command, delivery())

        cancelled = await engine.only_execution()
        assert cancelled.state == "cancelled"
        assert cancelled.error == "by hand"
        assert cancelled.step("measure").state == "cancelled"
        ((subject, notice),) = engine.bus.announced
        assert subject == f"vigil.cancel.{execution.id}"
        assert notice == StepCancelled(execution_id=execution.id, step="measure", attempt=1)


async def test_cancelling_an_unknown_execution_is_settled_without_error(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        command = CancelRequested(
            execution_id="01NOPE", reason="x", requested_at=engine.clock.now()
        )
        await engine.commands.on_cancel(command, delivery())
        assert engine.bus.published == []


async def test_a_manual_run_starts_the_workflow_once_however_often_it_is_delivered(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.commands.on_run(run_command(), delivery())
        await engine.commands.on_run(run_command(), delivery(2))

        execution = await engine.only_execution()
        assert execution.id == "01MANUAL"
        assert execution.trigger_key == "manual/01MANUAL"
        assert execution.source == "manual"
        assert len(engine.requests("cli")) == 1


async def test_a_manual_run_of_an_undefined_workflow_is_refused(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        with pytest.raises(PermanentError, match="ops/nope is not defined"):
            await engine.commands.on_run(run_command("nope"), delivery())


async def test_a_manual_run_before_the_definitions_are_loaded_is_retried(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        loading = Commands(
            store=engine.store,
            progress=engine.results.progress,
            definitions=DefinitionsView(),
            clock=engine.clock,
        )
        with pytest.raises(TransientError, match="not loaded"):
            await loading.on_run(run_command(), delivery())
