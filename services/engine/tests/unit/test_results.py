"""Results (`Results.on_results`, `on_dead_letter`) through the shipped fakes, failure paths
included: a lost compare-and-set, a publish that fails after the save, a redelivery."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.definitions import workflow
from tests.support.engine import Engine, running_engine
from vigil.common.adapters.sqlite import SqliteStore
from vigil.common.documents import Execution
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import DeadLetter, ExecutionEvent, StepRequest
from vigil.common.store import Retention
from vigil.common.testing import delivery

TWO_STEPS = workflow(
    "disk",
    """
    - name: measure
      cli: {command: ["df"], timeout: 30s}
    - name: clean
      cli: {command: ["echo", "{{ steps.measure.output.stdout }}"], timeout: 30s}
    """,
    matcher='alertname=~"Disk.*"',
)


async def started(engine: Engine, *names: str) -> list[StepRequest]:
    await engine.receive(*(engine.alert(name) for name in names))
    requests = engine.requests("cli")
    assert len(requests) == len(names)
    engine.bus.clear()
    return requests


async def test_a_result_records_the_step_and_dispatches_the_next_one(tmp_path: Path) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        (measure,) = await started(engine, "DiskFull")

        outcomes = await engine.report(
            engine.result_for(measure, exitCode=0, stdout="93%", stderr="")
        )

        assert outcomes == [None]
        execution = await engine.only_execution()
        assert execution.step("measure").state == "succeeded"
        assert execution.step("measure").output == {"exitCode": 0, "stdout": "93%", "stderr": ""}
        (clean,) = engine.requests("cli")
        assert clean.step == "clean"
        assert clean.cli is not None
        assert clean.cli.argv == ["echo", "93%"]


async def test_a_batch_finishes_several_executions_with_one_write_each(tmp_path: Path) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        first, second = await started(engine, "DiskFull", "DiskSlow")
        await engine.report(engine.result_for(first), engine.result_for(second))
        cleans = engine.requests("cli")
        engine.bus.clear()

        outcomes = await engine.report(*(engine.result_for(r) for r in cleans))

        assert outcomes == [None, None]
        executions = await engine.executions()
        assert {e.state for e in executions} == {"succeeded"}
        # created at version 0; one write per batch that changed it: two batches
        assert {e.version for e in executions} == {2}
        finished = [e for e in engine.bus.messages(ExecutionEvent) if e.state == "succeeded"]
        assert len(finished) == 2


async def test_a_repeated_result_changes_nothing(tmp_path: Path) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        (measure,) = await started(engine, "DiskFull")
        result = engine.result_for(measure)
        await engine.report(result)
        before = await engine.only_execution()

        outcomes = await engine.report(result, attempt=2)

        assert outcomes == [None]
        assert await engine.only_execution() == before
        assert len(engine.requests("cli")) == 1, "the next step's request is not sent twice"


async def test_a_failed_publish_after_the_save_is_healed_by_the_redelivery(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        (measure,) = await started(engine, "DiskFull")
        result = engine.result_for(measure)
        engine.bus.fail_next()

        with pytest.raises(TransientError):
            await engine.report(result)
        assert (await engine.only_execution()).step("clean").state == "running"
        assert engine.requests() == []

        assert await engine.report(result, attempt=2) == [None]
        (clean,) = engine.requests("cli")
        assert clean.step == "clean"


class RacingStore(SqliteStore):
    """The SQLite store with another writer that changes an execution just before the
    first batch write: the batch loses its compare-and-set for that execution."""

    racing_with: str | None = None

    async def update_executions(self, updates: Sequence[tuple[Execution, int]]) -> list[bool]:
        if self.racing_with is not None:
            current = await self.get_execution(self.racing_with)
            assert current is not None
            bumped = current.model_copy(update={"version": current.version + 1})
            await self.update_execution(bumped, expected_version=current.version)
            self.racing_with = None
        return await super().update_executions(updates)


async def test_a_lost_compare_and_set_is_applied_again_on_the_reloaded_execution(
    tmp_path: Path,
) -> None:
    store = await RacingStore.open(f"sqlite:///{tmp_path / 'race.db'}", retention=Retention())
    assert isinstance(store, RacingStore)
    try:
        async with running_engine(tmp_path, TWO_STEPS, store=store) as engine:
            (measure,) = await started(engine, "DiskFull")
            store.racing_with = measure.execution_id

            assert await engine.report(engine.result_for(measure)) == [None]

            execution = await engine.only_execution()
            assert execution.step("measure").state == "succeeded"
            assert execution.version == 2  # the other writer's, then ours
            assert [r.step for r in engine.requests("cli")] == ["clean"]
    finally:
        await store.close()


async def test_a_result_for_an_unknown_execution_is_refused_alone(tmp_path: Path) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        (measure,) = await started(engine, "DiskFull")
        stray = engine.result_for(measure).model_copy(update={"execution_id": "01NOPE"})

        outcomes = await engine.report(stray, engine.result_for(measure))

        assert isinstance(outcomes[0], PermanentError)
        assert "unknown execution 01NOPE" in str(outcomes[0])
        assert outcomes[1] is None


async def test_a_dead_lettered_request_fails_its_step_with_the_reason(tmp_path: Path) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        (measure,) = await started(engine, "DiskFull")
        letter = DeadLetter(
            stream="STEPS",
            consumer="executor-cli",
            subject="vigil.steps.cli",
            deliveries=5,
            reason="TransientError: no runner",
            data=measure.model_dump_json(),
        )

        await engine.results.on_dead_letter(letter, delivery())

        execution = await engine.only_execution()
        assert execution.state == "failed"
        assert execution.step("measure").error == (
            "dead-lettered after 5 deliveries: TransientError: no runner"
        )
        assert execution.step("clean").state == "skipped"


async def test_a_dead_letter_that_is_not_a_step_request_is_dropped_with_a_log(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        letter = DeadLetter(
            stream="STEPS",
            consumer="executor-cli",
            subject="vigil.steps.cli",
            deliveries=5,
            reason="undecodable",
            data="{not json",
        )
        await engine.results.on_dead_letter(letter, delivery())
        assert engine.bus.published == []
