"""The executor's handler (`StepWorker`) through the shipped fakes and scripted runners:
what the engine gets back (the result, its message id), what is kept as an artifact, and
how cancellation notices and shutdown reach a running attempt."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from opentelemetry import trace

from tests.support.tracing import install_span_exporter
from vigil.common.documents import Artifact
from vigil.common.errors import InvalidInput, PermanentError, TransientError
from vigil.common.messages import CliStep, Contract, StepCancelled, StepRequest, StepResult
from vigil.common.testing import FakeClock, RecordingPublisher, delivery
from vigil.executor.adapters.local import LocalProcessRunner
from vigil.executor.domain.results import ProcessOutcome
from vigil.executor.handlers import StepWorker
from vigil.executor.runners import Runners

LIMIT = 1024


def request(step: str = "measure", attempt: int = 1, timeout: float = 30.0) -> StepRequest:
    return StepRequest(
        execution_id="01EX",
        namespace="ops",
        workflow="disk",
        step=step,
        attempt=attempt,
        idempotency_key=f"01EX/{step}/{attempt}",
        cli=CliStep(argv=["df", "-P", "/"], timeout_seconds=timeout),
    )


@dataclass(slots=True)
class ScriptedRunner:
    """Answers with `outcome`; with `hold`, waits until cancelled by the event (or task)."""

    outcome: ProcessOutcome = field(
        default_factory=lambda: ProcessOutcome(exit_code=0, stdout="ok\n")
    )
    hold: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)
    runs: list[StepRequest] = field(default_factory=list)
    released: list[StepRequest] = field(default_factory=list)

    async def run(self, request: StepRequest, cancel: asyncio.Event) -> ProcessOutcome:
        self.runs.append(request)
        self.started.set()
        if self.hold:
            await cancel.wait()
            return ProcessOutcome(exit_code=None, cancelled=True)
        return self.outcome

    async def release(self, request: StepRequest) -> None:
        self.released.append(request)


@dataclass(slots=True)
class MemoryArtifacts:
    stored: dict[str, Artifact] = field(default_factory=dict)

    async def put_artifact(self, artifact: Artifact) -> None:
        self.stored[artifact.id] = artifact

    async def get_artifact(self, artifact_id: str) -> Artifact | None:
        return self.stored.get(artifact_id)


@dataclass(slots=True)
class Harness:
    runner: ScriptedRunner = field(default_factory=ScriptedRunner)
    bus: RecordingPublisher = field(default_factory=RecordingPublisher)
    artifacts: MemoryArtifacts = field(default_factory=MemoryArtifacts)
    clock: FakeClock = field(default_factory=FakeClock)

    def worker(self, runners: Runners | None = None) -> StepWorker:
        return StepWorker(
            bus=self.bus,
            store=self.artifacts,
            runners={"cli": self.runner} if runners is None else runners,
            output_limit=LIMIT,
            clock=self.clock,
        )

    def result(self) -> StepResult:
        (published,) = self.bus.published
        assert published.subject == "vigil.results"
        assert isinstance(published.message, StepResult)
        return published.message


async def test_a_finished_attempt_publishes_its_result_under_the_requests_key() -> None:
    harness = Harness()

    await harness.worker().on_step(request(), delivery())

    (published,) = harness.bus.published
    assert published.msg_id == "01EX/measure/1/result"
    result = harness.result()
    assert result.outcome == "succeeded"
    assert result.output == {
        "command": ["df", "-P", "/"],
        "exitCode": 0,
        "stdout": "ok\n",
        "stderr": "",
        "truncated": False,
        "artifactId": None,
    }
    assert harness.artifacts.stored == {}
    assert harness.runner.released == [request()], "released once the result is out"


async def test_a_redelivered_request_of_an_attempt_finished_here_does_not_run_it_again() -> None:
    """The server lost the acknowledgement (the consumer's leader died): the result is
    stored already, so the redelivery is settled without repeating the step's effect."""
    harness = Harness()
    worker = harness.worker()
    await worker.on_step(request(), delivery())

    await worker.on_step(request(), delivery(2))

    assert len(harness.runner.runs) == 1
    assert len(harness.bus.published) == 1


async def test_finished_attempts_are_forgotten_after_five_minutes() -> None:
    harness = Harness()
    worker = harness.worker()
    await worker.on_step(request("old"), delivery())
    harness.clock.advance(5 * 60 + 1)
    await worker.on_step(request("new"), delivery())

    await worker.on_step(request("old"), delivery(2))

    assert [run.step for run in harness.runner.runs] == ["old", "new", "old"]
    assert list(worker.finished) == [("01EX", "new", 1), ("01EX", "old", 1)]


async def test_a_redelivered_attempt_whose_result_was_never_acknowledged_is_not_rerun() -> None:
    """The result could not be published within the patience: the request went back, and
    its redelivery publishes the result kept from the run instead of running it again."""
    harness = Harness()
    worker = dataclasses.replace(harness.worker(), result_patience=0.0)
    harness.bus.fail_next()
    with pytest.raises(TransientError):
        await worker.on_step(request(), delivery())
    assert harness.runner.released == [], "not released while its result is not out"

    await worker.on_step(request(), delivery(2))

    assert len(harness.runner.runs) == 1
    assert harness.result().outcome == "succeeded"
    assert harness.runner.released == [request()]
    assert worker.unreported == {}
    assert list(worker.finished) == [("01EX", "measure", 1)]


async def test_a_redelivery_while_the_attempt_still_runs_here_comes_back_later() -> None:
    """Its acknowledgement deadline passed while it ran: the redelivery neither runs it a
    second time nor settles it; it is handed back with a delay."""
    harness = Harness(runner=ScriptedRunner(hold=True))
    worker = harness.worker()
    first = asyncio.create_task(worker.on_step(request(), delivery()))
    await harness.runner.started.wait()

    with pytest.raises(TransientError, match="still running here") as refused:
        await worker.on_step(request(), delivery(2))
    worker.running[("01EX", "measure", 1)].set()  # the first delivery's run ends
    await first

    assert refused.value.retry_after is not None
    assert len(harness.runner.runs) == 1
    assert len(harness.bus.published) == 1


@dataclass(slots=True)
class SlowFailingPublisher(RecordingPublisher):
    """Every publish fails after taking `seconds` of the clock (a timeout, not a refusal)."""

    clock: FakeClock = field(default_factory=FakeClock)
    seconds: float = 5.0

    async def publish(self, subject: str, message: Contract, *, msg_id: str) -> bool:
        self.clock.current += timedelta(seconds=self.seconds)
        raise TransientError("publish timed out")


async def test_the_result_patience_counts_the_time_publishes_took_not_only_the_pauses() -> None:
    harness = Harness()
    harness.bus = SlowFailingPublisher(clock=harness.clock)
    worker = dataclasses.replace(harness.worker(), result_patience=10.0)
    started = harness.clock.now()

    with pytest.raises(TransientError, match="timed out"):
        await worker.on_step(request(), delivery())

    assert harness.clock.now() - started <= timedelta(seconds=10 + 5)
    assert harness.clock.slept == [0.2]


async def test_output_beyond_the_limit_is_cut_and_kept_whole_in_an_artifact() -> None:
    big = "x" * (LIMIT * 3)
    harness = Harness(runner=ScriptedRunner(outcome=ProcessOutcome(exit_code=1, stdout=big)))

    await harness.worker().on_step(request(), delivery())

    result = harness.result()
    assert result.outcome == "failed"
    assert result.error == "exited with code 1"
    assert result.output is not None
    assert result.output["stdout"] == "x" * LIMIT
    assert result.output["truncated"] is True
    artifact = harness.artifacts.stored["01EX/measure/1/output"]
    assert result.output["artifactId"] == artifact.id
    assert big in artifact.content


async def test_a_cancellation_notice_stops_the_running_attempt() -> None:
    harness = Harness(runner=ScriptedRunner(hold=True))
    worker = harness.worker()
    running = asyncio.create_task(worker.on_step(request(), delivery()))
    await harness.runner.started.wait()

    await worker.on_cancel(StepCancelled(execution_id="01EX", step="measure", attempt=1))
    await asyncio.wait_for(running, timeout=5)

    result = harness.result()
    assert result.outcome == "cancelled"
    assert result.error == "cancelled"
    assert worker.running == {}


async def test_a_notice_for_another_attempt_leaves_the_running_one_alone() -> None:
    harness = Harness(runner=ScriptedRunner(hold=True))
    worker = harness.worker()
    running = asyncio.create_task(worker.on_step(request(), delivery()))
    await harness.runner.started.wait()

    await worker.on_cancel(StepCancelled(execution_id="01EX", step="measure", attempt=2))
    await asyncio.sleep(0)
    assert not running.done()

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_request_whose_notice_came_first_is_settled_without_running() -> None:
    harness = Harness()
    worker = harness.worker()
    await worker.on_cancel(StepCancelled(execution_id="01EX", step="measure", attempt=1))

    await worker.on_step(request(), delivery())

    assert harness.runner.runs == []
    result = harness.result()
    assert result.outcome == "cancelled"
    assert result.error == "cancelled before it started"


async def test_cancellation_notices_are_forgotten_after_ten_minutes() -> None:
    harness = Harness()
    worker = harness.worker()
    await worker.on_cancel(StepCancelled(execution_id="01EX", step="old", attempt=1))
    harness.clock.advance(11 * 60)
    await worker.on_cancel(StepCancelled(execution_id="01EX", step="new", attempt=1))

    assert list(worker.cancelled) == [("01EX", "new", 1)]


async def test_shutdown_stops_the_attempt_and_publishes_nothing() -> None:
    """The task is cancelled (the executor stops): the request must be redelivered."""
    harness = Harness(runner=ScriptedRunner(hold=True))
    worker = harness.worker()
    running = asyncio.create_task(worker.on_step(request(), delivery()))
    await harness.runner.started.wait()

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert harness.bus.published == []
    assert worker.running == {}
    assert harness.runner.released == [], "a pod stays for the redelivery to find"


async def test_a_step_kind_without_a_runner_is_refused() -> None:
    harness = Harness()
    with pytest.raises(PermanentError, match="runs no cli steps"):
        await harness.worker(runners={}).on_step(request(), delivery())


async def test_an_unacknowledged_result_is_published_again_without_running_the_step_again() -> None:
    """RESULTS electing a leader: the step ran once, its result goes out once acknowledged."""
    harness = Harness()
    harness.bus.fail_next(3, reason="no response from stream")

    await harness.worker().on_step(request(), delivery())

    assert len(harness.runner.runs) == 1
    assert harness.result().outcome == "succeeded"
    assert harness.clock.slept == [0.2, 0.4, 0.8]
    assert harness.runner.released == [request()]


async def test_a_result_never_acknowledged_leaves_the_request_to_be_redelivered() -> None:
    """After `result_patience` seconds of backoff the error goes to the consumer (nak)."""
    harness = Harness()
    harness.bus.fail_next(100)
    worker = dataclasses.replace(harness.worker(), result_patience=10.0)

    with pytest.raises(TransientError, match="no ack from JetStream"):
        await worker.on_step(request(), delivery())

    assert harness.bus.published == []
    assert harness.clock.slept == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert sum(harness.clock.slept) <= 10.0
    assert harness.runner.released == []


async def test_the_local_runner_refuses_a_request_without_a_cli_body() -> None:
    bare = request().model_copy(update={"cli": None})
    with pytest.raises(InvalidInput, match="without a `cli` body"):
        await LocalProcessRunner(output_limit=LIMIT).run(bare, asyncio.Event())


async def test_the_trace_names_the_artifact_the_step_left() -> None:
    spans = install_span_exporter()
    spans.clear()
    big = "x" * (LIMIT * 3)
    harness = Harness(runner=ScriptedRunner(outcome=ProcessOutcome(exit_code=0, stdout=big)))

    with trace.get_tracer("test").start_as_current_span("consume vigil-executor-cli"):
        await harness.worker().on_step(request(), delivery())

    finished = {span.name: span for span in spans.get_finished_spans()}
    assert set(finished) == {"run cli", "consume vigil-executor-cli"}
    run, consumed = finished["run cli"], finished["consume vigil-executor-cli"]
    assert run.parent is not None
    assert run.parent.span_id == consumed.context.span_id  # the run is in the request's trace
    span = consumed
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "vigil.step.outcome": "succeeded",
        "vigil.artifact.cli-output": "01EX/measure/1/output",
    }
