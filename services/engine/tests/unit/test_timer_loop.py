"""The timer loop (`TimerLoop.tick`) on a fake clock: step deadlines, waits, retry backoff,
a publish that fails after the save, and a workflow deleted under a running execution."""

from __future__ import annotations

from pathlib import Path

from tests.support.definitions import workflow
from tests.support.engine import running_engine
from vigil.common.definitions import definition_key
from vigil.common.messages import StepCancelled
from vigil.engine.domain.machine import WORKER_GRACE

WORKFLOW = workflow(
    "disk",
    """
    - name: measure
      cli: {command: ["df"], timeout: 30s}
      retry: {attempts: 2, backoff: 10s}
    - name: settle
      wait: {duration: 5m}
    """,
)


async def test_nothing_is_claimed_before_it_is_due(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        engine.clock.advance(29)
        assert await engine.timers.tick() == 0


async def test_a_step_whose_worker_never_answers_times_out_and_is_retried(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        engine.bus.clear()

        engine.clock.advance(30 + WORKER_GRACE.total_seconds())
        assert await engine.timers.tick() == 1

        measure = (await engine.only_execution()).step("measure")
        assert measure.state == "pending"  # attempt 1 timed out; attempt 2 after the backoff
        assert measure.error == "no result within 60s"
        assert [n.attempt for n in engine.bus.notices(StepCancelled)] == [1]  # worker told
        assert engine.requests() == []

        engine.clock.advance(10)
        assert await engine.timers.tick() == 1
        (retry,) = engine.requests("cli")
        assert retry.attempt == 2


async def test_a_wait_ends_when_its_duration_has_passed(tmp_path: Path) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        (measure,) = engine.requests("cli")
        await engine.report(engine.result_for(measure))
        assert (await engine.only_execution()).step("settle").state == "running"

        engine.clock.advance(5 * 60)
        assert await engine.timers.tick() == 1

        execution = await engine.only_execution()
        assert execution.state == "succeeded"
        assert execution.step("settle").output == {"until": False, "waitedSeconds": 300.0}


async def test_a_publish_that_fails_in_a_tick_is_published_by_a_later_tick(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        (measure,) = engine.requests("cli")
        await engine.report(engine.result_for(measure, "failed"))
        engine.bus.clear()
        engine.clock.advance(10)  # the retry is due
        engine.bus.fail_next()

        assert await engine.timers.tick() == 1
        assert engine.requests() == []
        assert (await engine.only_execution()).step("measure").attempt == 2  # saved

        assert await engine.timers.tick() == 0, "not before the re-publish is due"
        engine.clock.advance(2)
        assert await engine.timers.tick() == 1
        (retry,) = engine.requests("cli")
        assert retry.attempt == 2


async def test_an_execution_whose_workflow_was_deleted_fails_at_its_next_timer(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, WORKFLOW) as engine:
        await engine.receive(engine.alert("DiskFull"))
        engine.definitions.apply(definition_key("Workflow", "ops", "disk"), None)

        engine.clock.advance(30 + WORKER_GRACE.total_seconds())
        assert await engine.timers.tick() == 1

        execution = await engine.only_execution()
        assert execution.state == "failed"
        assert execution.error == "workflow ops/disk no longer exists"
