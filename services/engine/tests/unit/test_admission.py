"""Admission (`Admission.on_alerts`) through the shipped fakes: a recording publisher, a fake
clock and the SQLite store. What an operator observes: which executions exist, which step
requests and events went out, and which alerts are retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.definitions import workflow
from tests.support.documents import make_execution
from tests.support.engine import running_engine
from vigil.common.adapters.sqlite import SqliteStore
from vigil.common.documents import Execution
from vigil.common.errors import Conflict, TransientError
from vigil.common.messages import ExecutionEvent, StepCancelled
from vigil.common.store import Retention

ONE_CLI_STEP = workflow(
    "disk",
    """
    - name: measure
      cli: {command: ["df", "-P", "{{ alert.labels.mount | default('/') }}"], timeout: 30s}
    """,
)
SETTLE = workflow(
    "settle",
    """
    - name: settle
      wait: {duration: 1h, until: 'alert.status == "resolved"'}
    """,
)


def guarded(policy: str, cooldown: str | None = None) -> str:
    return workflow(
        "guarded",
        '- {name: measure, cli: {command: ["true"], timeout: 30s}}',
        spec=f"""
        concurrency: {{key: "{{{{ alert.labels.host }}}}", policy: {policy}}}
        {f"cooldown: {cooldown}" if cooldown else ""}
        """,
    )


async def test_a_matching_alert_starts_an_execution_and_dispatches_its_first_step(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, ONE_CLI_STEP) as engine:
        outcomes = await engine.receive(engine.alert("DiskFull", mount="/srv"))

        assert outcomes == [None]
        execution = await engine.only_execution()
        assert execution.state == "running"
        assert execution.step("measure").state == "running"
        (request,) = engine.requests("cli")
        assert request.cli is not None
        assert request.cli.argv == ["df", "-P", "/srv"]
        assert request.idempotency_key == f"{execution.id}/measure/1"
        assert [e.state for e in engine.bus.messages(ExecutionEvent)] == ["running"]


async def test_an_alert_no_workflow_matches_starts_nothing(tmp_path: Path) -> None:
    async with running_engine(tmp_path, ONE_CLI_STEP) as engine:
        assert await engine.receive(engine.alert("CpuHigh")) == [None]

        assert await engine.executions() == []
        assert engine.bus.published == []
        assert (await engine.store.get_alert("ops/am/fp-CpuHigh")) is not None  # recorded


async def test_a_redelivered_alert_starts_no_second_execution(tmp_path: Path) -> None:
    async with running_engine(tmp_path, ONE_CLI_STEP) as engine:
        alert = engine.alert("DiskFull")
        await engine.receive(alert)
        await engine.receive(alert, attempt=2)

        assert len(await engine.executions()) == 1
        assert len(engine.requests()) == 1  # the re-publish carried the same message id


async def test_an_alert_of_a_source_not_loaded_yet_is_retried_alone(tmp_path: Path) -> None:
    async with running_engine(tmp_path, ONE_CLI_STEP) as engine:
        unknown = engine.alert("DiskFull", source="other", fingerprint="x")
        known = engine.alert("DiskFull")

        outcomes = await engine.receive(unknown, known)

        assert isinstance(outcomes[0], TransientError)
        assert "ops/other not loaded yet" in str(outcomes[0])
        assert outcomes[1] is None
        assert len(await engine.executions()) == 1


async def test_a_publish_that_fails_after_the_save_is_healed_by_the_redelivery(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, ONE_CLI_STEP) as engine:
        alert = engine.alert("DiskFull")
        engine.bus.fail_next()

        with pytest.raises(TransientError):  # the bus naks the batch: it comes again
            await engine.receive(alert)
        assert len(await engine.executions()) == 1, "the execution was saved first"
        assert engine.requests() == []

        assert await engine.receive(alert, attempt=2) == [None]
        assert len(await engine.executions()) == 1
        assert len(engine.requests("cli")) == 1, "the redelivery published the step"


async def test_forbid_suppresses_a_second_alert_for_a_running_key(tmp_path: Path) -> None:
    async with running_engine(tmp_path, guarded("Forbid")) as engine:
        await engine.receive(engine.alert("DiskFull", fingerprint="a", host="db-1"))
        await engine.receive(engine.alert("DiskFull", fingerprint="b", host="db-1"))
        await engine.receive(engine.alert("DiskFull", fingerprint="c", host="db-2"))

        executions = await engine.executions()
        assert sorted(e.concurrency_key for e in executions) == ["db-1", "db-2"]
        assert {e.exclusive_key for e in executions} == {"ops/guarded/db-1", "ops/guarded/db-2"}


async def test_replace_cancels_the_running_execution_and_starts_the_new_one(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, guarded("Replace")) as engine:
        await engine.receive(engine.alert("DiskFull", fingerprint="a", host="db-1"))
        first = await engine.only_execution()

        await engine.receive(engine.alert("DiskFull", fingerprint="b", host="db-1"))

        replaced = await engine.store.get_execution(first.id)
        assert replaced is not None
        assert replaced.state == "cancelled"
        assert replaced.error == "replaced by a newer alert"
        (running,) = await engine.executions(state="running")
        assert running.id != first.id
        assert [subject for subject, _ in engine.bus.announced] == [f"vigil.cancel.{first.id}"]
        assert engine.bus.notices(StepCancelled) == [
            StepCancelled(execution_id=first.id, step="measure", attempt=1)
        ]


async def test_cooldown_suppresses_a_repeat_until_it_has_passed(tmp_path: Path) -> None:
    async with running_engine(tmp_path, guarded("Allow", cooldown="10m")) as engine:
        await engine.receive(engine.alert("DiskFull", fingerprint="a", host="db-1"))
        engine.clock.advance(60)
        await engine.receive(engine.alert("DiskFull", fingerprint="b", host="db-1"))
        assert len(await engine.executions()) == 1, "within the cooldown"

        engine.clock.advance(10 * 60)
        await engine.receive(engine.alert("DiskFull", fingerprint="c", host="db-1"))
        assert len(await engine.executions()) == 2, "after the cooldown"


async def test_a_resolved_alert_ends_the_wait_of_its_running_execution(tmp_path: Path) -> None:
    async with running_engine(tmp_path, SETTLE) as engine:
        await engine.receive(engine.alert("DiskFull"))
        assert (await engine.only_execution()).step("settle").state == "running"

        engine.clock.advance(30)
        await engine.receive(engine.alert("DiskFull", status="resolved"))

        execution = await engine.only_execution()
        assert execution.state == "succeeded"
        assert execution.step("settle").output == {"until": True, "waitedSeconds": 30.0}


async def test_a_firing_and_its_resolve_in_one_batch_reach_the_new_execution(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path, SETTLE) as engine:
        firing = engine.alert("DiskFull")
        engine.clock.advance(1)
        resolved = engine.alert("DiskFull", status="resolved")

        assert await engine.receive(firing, resolved) == [None, None]

        assert (await engine.only_execution()).state == "succeeded"


class RivalReplicaStore(SqliteStore):
    """The SQLite store where another engine replica inserts an execution for the same
    concurrency key just before this one does (both passed the policy check)."""

    rival: Execution | None = None

    async def insert_execution(self, execution: Execution) -> bool:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            assert await super().insert_execution(
                rival.model_copy(update={"exclusive_key": execution.exclusive_key})
            )
        return await super().insert_execution(execution)


async def test_a_concurrency_key_taken_by_another_replica_meanwhile_is_retried_then_obeyed(
    tmp_path: Path,
) -> None:
    store = await RivalReplicaStore.open(
        f"sqlite:///{tmp_path / 'rival.db'}", retention=Retention()
    )
    assert isinstance(store, RivalReplicaStore)
    try:
        async with running_engine(tmp_path, guarded("Forbid"), store=store) as engine:
            store.rival = make_execution(
                "01RIVAL",
                at=engine.clock.now(),
                namespace="ops",
                workflow="guarded",
                state="running",
                concurrency_key="db-1",
            )
            alert = engine.alert("DiskFull", fingerprint="a", host="db-1")

            (outcome,) = await engine.receive(alert)
            assert isinstance(outcome, Conflict), "the alert is redelivered"
            assert engine.requests() == []

            assert await engine.receive(alert, attempt=2) == [None]
            (only,) = await engine.executions()
            assert only.id == "01RIVAL", "the redelivered alert obeyed Forbid"
    finally:
        await store.close()


async def test_an_agent_step_is_dispatched_to_the_agent_workers_with_its_goal_rendered(
    tmp_path: Path,
) -> None:
    investigate = workflow(
        "crashloop",
        """
        - name: investigate
          timeout: 5m
          agent:
            goal: "Find why {{ alert.labels.pod }} crash-loops."
            tools: [kubernetes, logs]
            maxIterations: 5
            outputSchema:
              type: object
              properties: {owner: {type: string}}
        """,
    )
    async with running_engine(tmp_path, investigate) as engine:
        alert = engine.alert("DiskFull", pod="api-7f9c")
        runbook = alert.alert.model_copy(update={"annotations": {"runbook_url": "https://rb/x"}})
        await engine.receive(alert.model_copy(update={"alert": runbook}))

        (request,) = engine.requests("agent")
        assert engine.bus.subjects() == ["vigil.steps.agent", "vigil.events.ops.crashloop"]
        assert request.agent is not None
        assert request.agent.goal == "Find why api-7f9c crash-loops."
        assert request.agent.tools == ["kubernetes", "logs"]
        assert (request.agent.max_iterations, request.agent.timeout_seconds) == (5, 300.0)
        assert request.agent.runbook_url == "https://rb/x"
        assert request.agent.output_schema == {
            "type": "object",
            "properties": {"owner": {"type": "string"}},
        }
