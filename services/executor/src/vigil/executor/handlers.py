"""Executor handlers: run one attempt of a step with the runner of its kind, publish the
result; stop a running attempt when a cancellation notice comes.

The runner is looked up by the step's kind (`vigil.executor.runners`); what its outcome
means as a result is `vigil.executor.domain.results`. The result's `Nats-Msg-Id` is derived
from the request's, so running a redelivered step again publishes a result the stream
deduplicates, and the engine's compare-and-set makes a late duplicate a no-op. A result
the stream did not acknowledge (RESULTS electing a leader) is published again, with
backoff, for `result_patience` seconds before the request is handed back: the step has
run, and running it again only to report it would repeat its effect. For the same reason
a request for an attempt this process finished lately (its result acknowledged) is settled
without running it: the server redelivers one whose acknowledgement it lost (the consumer's
leader died before storing it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from opentelemetry import trace
from prometheus_client import Counter

from vigil.common import subjects
from vigil.common.bus import Delivery, Publisher
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import StepCancelled, StepRequest, StepResult
from vigil.common.metrics import observe_step, start_timing
from vigil.common.store import ArtifactStore
from vigil.executor.domain.results import cancelled_result, step_result
from vigil.executor.runners import Runners, StepRunner

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("vigil.executor")

STEPS_RUN = Counter("vigil_steps_run_total", "Step attempts run.", ["kind", "outcome"])
CANCELLED_MEMORY = timedelta(minutes=10)
RESULT_RETRY_FIRST_SECONDS = 0.2
RESULT_RETRY_MAX_SECONDS = 5.0
# Finished attempts remembered: a lost acknowledgement comes back after the consumer's
# ack_wait (30 s by default); the cap bounds the memory at high step rates.
FINISHED_MEMORY = timedelta(minutes=5)
FINISHED_REMEMBERED = 50_000
# A redelivery of an attempt still running here comes back after this long.
STILL_RUNNING_RETRY_SECONDS = 5.0

type Attempt = tuple[str, str, int]


def _attempt(execution_id: str, step: str, attempt: int) -> Attempt:
    return (execution_id, step, attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepWorker:
    bus: Publisher
    store: ArtifactStore
    runners: Runners
    output_limit: int
    clock: Clock = SYSTEM_CLOCK
    # Seconds a finished attempt's result is published again before the request is
    # redelivered (and the step run again); the consumer's heartbeat holds it meanwhile.
    result_patience: float = 60.0
    # Attempts running here, with the event that stops them.
    running: dict[Attempt, asyncio.Event] = field(default_factory=dict)
    # Attempts cancelled lately (when the notice came): a request for one that was still
    # queued when its notice came is settled without running it.
    cancelled: dict[Attempt, datetime] = field(default_factory=dict)
    # Attempts finished here lately, oldest first, with when (their results are stored).
    finished: dict[Attempt, datetime] = field(default_factory=dict)
    # Attempts that ran here and whose result the stream has not acknowledged yet: a
    # redelivery publishes this result instead of running the step again.
    unreported: dict[Attempt, StepResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        start_timing(self.runners)

    async def on_cancel(self, notice: StepCancelled) -> None:
        attempt = _attempt(notice.execution_id, notice.step, notice.attempt)
        now = self.clock.now()
        self.cancelled[attempt] = now
        for old in [a for a, at in self.cancelled.items() if now - at > CANCELLED_MEMORY]:
            del self.cancelled[old]
        stop = self.running.get(attempt)
        if stop is not None and not stop.is_set():
            log.info(
                "step_cancel_received",
                execution_id=notice.execution_id,
                step=notice.step,
                attempt=notice.attempt,
            )
            stop.set()

    async def on_step(self, request: StepRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=request.execution_id, step=request.step, attempt=request.attempt
        )
        runner = self.runners.get(request.kind)
        if runner is None:
            msg = f"this executor runs no {request.kind} steps (runners: {sorted(self.runners)})"
            raise PermanentError(msg)
        started = self.clock.now()
        attempt = _attempt(request.execution_id, request.step, request.attempt)
        if attempt in self.finished:
            log.info("step_already_finished", delivery=delivery.delivery)
            return
        if attempt in self.running:
            # Redelivered while it runs (its acknowledgement deadline passed): the running
            # delivery reports it; this one comes back later and finds it finished.
            msg = "this attempt is still running here"
            raise TransientError(msg, retry_after=STILL_RUNNING_RETRY_SECONDS)
        if (ran := self.unreported.get(attempt)) is not None:
            log.info("step_result_reported_again", delivery=delivery.delivery)
            await self._report(attempt, ran, request, runner)
            return
        if attempt in self.cancelled:
            log.info("step_skipped_cancelled")
            await self._publish(
                cancelled_result(
                    request,
                    started_at=started,
                    finished_at=self.clock.now(),
                    error="cancelled before it started",
                ),
                request,
            )
            return
        log.info("step_started", kind=request.kind, delivery=delivery.delivery)
        stop = self.running[attempt] = asyncio.Event()
        try:
            with tracer.start_as_current_span(
                f"run {request.kind}",
                attributes={"vigil.step.name": request.step, "vigil.step.attempt": request.attempt},
            ):
                outcome = await runner.run(request, stop)
        finally:
            self.running.pop(attempt, None)
        settled = step_result(
            request,
            outcome,
            started_at=started,
            finished_at=self.clock.now(),
            output_limit=self.output_limit,
        )
        span = trace.get_current_span()  # the consumer's span of this request
        span.set_attribute("vigil.step.outcome", settled.result.outcome)
        if settled.artifact is not None:
            await self.store.put_artifact(settled.artifact)
            # The trace links to what the step left: an agent's transcript, a long output.
            span.set_attribute(f"vigil.artifact.{settled.artifact.kind}", settled.artifact.id)
        result = settled.result
        seconds = (result.finished_at - result.started_at).total_seconds()
        observe_step(kind=request.kind, outcome=result.outcome, seconds=seconds)
        STEPS_RUN.labels(kind=request.kind, outcome=result.outcome).inc()
        self.unreported[attempt] = result
        await self._report(attempt, result, request, runner)
        log.info("step_finished", outcome=result.outcome, seconds=round(seconds, 3))

    async def _report(
        self, attempt: Attempt, result: StepResult, request: StepRequest, runner: StepRunner
    ) -> None:
        """Publish the result of an attempt that ran; then it is finished here."""
        await self._publish(result, request)
        self.unreported.pop(attempt, None)
        self._remember_finished(attempt)
        await runner.release(request)

    def _remember_finished(self, attempt: Attempt) -> None:
        now = self.clock.now()
        self.finished[attempt] = now
        while self.finished:
            oldest, at = next(iter(self.finished.items()))
            if now - at <= FINISHED_MEMORY and len(self.finished) <= FINISHED_REMEMBERED:
                return
            del self.finished[oldest]

    async def _publish(self, result: StepResult, request: StepRequest) -> None:
        """Publish until the stream acknowledges, for `result_patience` seconds at most;
        then raise the last TransientError (the request is redelivered, and the result kept
        in `unreported` is published then)."""
        deadline = self.clock.now() + timedelta(seconds=self.result_patience)
        pause = RESULT_RETRY_FIRST_SECONDS
        while True:
            try:
                await self.bus.publish(
                    subjects.results(), result, msg_id=f"{request.idempotency_key}/result"
                )
            except TransientError as exc:
                # The clock, not the sum of pauses: a failing publish takes time of its own.
                if self.clock.now() + timedelta(seconds=pause) > deadline:
                    raise
                log.warning("result_publish_retried", error=str(exc), in_seconds=pause)
                await self.clock.sleep(pause)
                pause = min(pause * 2, RESULT_RETRY_MAX_SECONDS)
                continue
            return
