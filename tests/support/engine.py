"""The engine's use cases wired to the shipped fakes: a recording publisher, a fake clock,
the real SQLite store on a temporary file, and definitions loaded from YAML.

The handlers are the production classes; only the bus and the clock are replaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tests.support.definitions import alertmanager_source, documents
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import Execution, ExecutionFilter
from vigil.common.messages import Alert, AlertReceived, StepRequest, StepResult
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    RecordingPublisher,
    definitions_view,
    delivery,
    sqlite_store,
)
from vigil.engine.admission import Admission
from vigil.engine.commands import Commands
from vigil.engine.progress import Progress
from vigil.engine.results import Results
from vigil.engine.timers import TimerLoop


@dataclass(frozen=True, slots=True, kw_only=True)
class Engine:
    store: Store
    bus: RecordingPublisher
    clock: FakeClock
    definitions: DefinitionsView
    admission: Admission
    results: Results
    commands: Commands
    timers: TimerLoop

    def alert(
        self,
        name: str = "DiskFull",
        *,
        status: str = "firing",
        fingerprint: str | None = None,
        starts_in: float = 0.0,
        source: str = "am",
        **labels: str,
    ) -> AlertReceived:
        """An alert received now, started 5 minutes before the fake clock's start (plus
        `starts_in` seconds): the same alert keeps its startsAt, as in Alertmanager."""
        return AlertReceived(
            namespace="ops",
            source=source,
            received_at=self.clock.now(),
            alert=Alert.model_validate(
                {
                    "status": status,
                    "fingerprint": fingerprint or f"fp-{name}",
                    "labels": {"alertname": name, **labels},
                    "startsAt": EPOCH - timedelta(minutes=5) + timedelta(seconds=starts_in),
                }
            ),
        )

    async def receive(self, *alerts: AlertReceived, attempt: int = 1) -> list[BaseException | None]:
        return await self.admission.on_alerts(
            [(alert, delivery(attempt, subject="vigil.alerts.ops.am")) for alert in alerts]
        )

    async def executions(self, **query: str) -> list[Execution]:
        page = await self.store.list_executions(ExecutionFilter.model_validate(query), limit=500)
        return page.items

    async def only_execution(self) -> Execution:
        (execution,) = await self.executions()
        return execution

    def requests(self, kind: str | None = None) -> list[StepRequest]:
        return [r for r in self.bus.messages(StepRequest) if kind in (None, r.kind)]

    def result_for(
        self, request: StepRequest, outcome: str = "succeeded", **output: object
    ) -> StepResult:
        now = self.clock.now()
        return StepResult.model_validate(
            {
                "execution_id": request.execution_id,
                "step": request.step,
                "attempt": request.attempt,
                "outcome": outcome,
                "output": output or {"exitCode": 0, "stdout": "", "stderr": ""},
                "error": None if outcome == "succeeded" else f"step {outcome}",
                "started_at": now,
                "finished_at": now,
            }
        )

    async def report(self, *results: StepResult, attempt: int = 1) -> list[BaseException | None]:
        return await self.results.on_results(
            [(result, delivery(attempt, subject="vigil.results")) for result in results]
        )


@contextlib.asynccontextmanager
async def running_engine(
    folder: Path, workflows: str, *, store: Store | None = None
) -> AsyncIterator[Engine]:
    """The engine's handlers over `workflows` (YAML) plus Source `ops/am`."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await stack.enter_async_context(sqlite_store(folder))
        bus = RecordingPublisher()
        clock = FakeClock()
        definitions = definitions_view(documents(alertmanager_source("ops"), workflows))
        progress = Progress(store=store, bus=bus)
        yield Engine(
            store=store,
            bus=bus,
            clock=clock,
            definitions=definitions,
            admission=Admission(
                store=store, progress=progress, definitions=definitions, clock=clock
            ),
            results=Results(store=store, progress=progress, definitions=definitions, clock=clock),
            commands=Commands(store=store, progress=progress, definitions=definitions, clock=clock),
            timers=TimerLoop(
                store=store,
                progress=progress,
                definitions=definitions,
                clock=clock,
                owner="test",
            ),
        )
