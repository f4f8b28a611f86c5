"""The engine with a real nats-server and a real SQLite store, in process: a step request
that exhausts its deliveries lands in the DLQ with the reason, and the engine fails the
step (and the execution) with that reason instead of leaving it running."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.bus import consuming, eventually
from tests.support.definitions import alertmanager_source, documents
from vigil.common import streams, subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.stores import open_store
from vigil.common.bus import Delivery
from vigil.common.documents import Execution, ExecutionFilter
from vigil.common.errors import TransientError
from vigil.common.messages import Alert, AlertReceived, StepRequest
from vigil.common.testing import validated
from vigil.controller.publishing import publish_report
from vigil.engine.app import run
from vigil.engine.settings import EngineSettings

WORKFLOW = """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: wf, namespace: ops}
spec:
  steps:
    - name: probe
      cli: {command: ["true"]}
"""


async def test_a_dead_lettered_step_fails_its_execution_with_the_reason(
    nats_url: str, tmp_path: Path, bus: JetStreamBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    report = validated(documents(alertmanager_source("ops"), WORKFLOW))
    await publish_report(await bus.config_bucket(), report)
    monkeypatch.setenv("VIGIL_NATS_URL", nats_url)
    monkeypatch.setenv("VIGIL_STORE_URL", store_url)
    stop = asyncio.Event()
    engine = asyncio.create_task(run(EngineSettings(), stop))

    attempts: list[int] = []

    async def broken_executor(request: StepRequest, delivery: Delivery) -> None:
        attempts.append(delivery.delivery)
        raise TransientError("no runner available", retry_after=0.05)

    worker = replace(streams.EXECUTOR_CLI, max_deliver=2)
    store = await open_store(store_url)
    try:
        async with consuming(bus, worker, StepRequest, broken_executor):
            alert = Alert(
                status="firing",
                fingerprint="f1",
                labels={"alertname": "X"},
                starts_at=datetime(2026, 11, 24, 9, tzinfo=UTC),
            )
            await bus.publish(
                subjects.alerts("ops", "am"),
                AlertReceived(
                    namespace="ops", source="am", received_at=datetime.now(UTC), alert=alert
                ),
                msg_id="a1",
            )
            found: list[Execution] = []

            async def failed() -> bool:
                page = await store.list_executions(ExecutionFilter(state="failed"))
                found[:] = page.items
                return bool(page.items)

            await eventually(failed, "the execution failed", timeout=30)
        execution = found[0]
        probe = execution.step("probe")
        assert probe.state == "failed"
        assert probe.error is not None
        assert probe.error.startswith("dead-lettered after 2 deliveries:")
        assert "no runner available" in probe.error
        assert execution.error is not None
        assert "dead-lettered" in execution.error
        assert attempts == [1, 2]
    finally:
        stop.set()
        await asyncio.wait_for(engine, timeout=10)
        await store.close()
