"""The engine's execution counters, by workflow (`namespace/name`) and final state, as a
Prometheus scrape shows them: started when an alert starts an execution, finished once
when it reaches its final state (not again for a duplicate result)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from tests.support.definitions import workflow
from tests.support.engine import running_engine

ONE_STEP = workflow("metered", '- {name: measure, cli: {command: ["true"], timeout: 30s}}')


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_executions_are_counted_started_and_finished_by_workflow_and_state(
    tmp_path: Path,
) -> None:
    started = sample("vigil_executions_started_total", workflow="ops/metered")
    failed = sample("vigil_executions_finished_total", workflow="ops/metered", state="failed")
    succeeded = sample("vigil_executions_finished_total", workflow="ops/metered", state="succeeded")
    async with running_engine(tmp_path, ONE_STEP) as engine:
        assert await engine.receive(engine.alert("DiskFull", fingerprint="a")) == [None]
        assert await engine.receive(engine.alert("DiskFull", fingerprint="b")) == [None]
        assert sample("vigil_executions_started_total", workflow="ops/metered") == started + 2

        first, second = engine.requests("cli")
        assert await engine.report(engine.result_for(first)) == [None]
        assert await engine.report(engine.result_for(second, "failed")) == [None]
        assert await engine.report(engine.result_for(first)) == [None]  # a duplicate

    assert (
        sample("vigil_executions_finished_total", workflow="ops/metered", state="succeeded")
        == succeeded + 1
    )
    assert (
        sample("vigil_executions_finished_total", workflow="ops/metered", state="failed")
        == failed + 1
    )
