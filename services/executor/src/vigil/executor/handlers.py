"""Executor handler: run one attempt of a cli step and publish its result.

Output beyond the step-output bound (64 KiB per stream by default) is kept whole, up to the
artifact bound, as an artifact the output links to (`artifactId`).

The result's `Nats-Msg-Id` is derived from the request's, so running a redelivered step
again publishes a result the stream deduplicates, and the engine's compare-and-set makes a
late duplicate a no-op.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Histogram

from vigil.common import subjects
from vigil.common.adapters.jetstream import Delivery, JetStreamBus
from vigil.common.documents import Artifact
from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.messages import Output, StepCancelled, StepOutcome, StepRequest, StepResult
from vigil.common.store import Store
from vigil.executor.adapters.local import ProcessOutcome, run_process

log = structlog.get_logger(__name__)

STEP_DURATION = Histogram(
    "vigil_step_duration_seconds", "Duration of a step attempt.", ["kind", "outcome"]
)
CANCELLED_MEMORY_SECONDS = 600.0
STEPS_RUN = Counter("vigil_steps_run_total", "Step attempts run.", ["kind", "outcome"])


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorHandlers:
    bus: JetStreamBus
    store: Store
    output_limit: int
    artifact_limit: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Attempts running here, so a cancellation notice can stop them.
    running: dict[tuple[str, str, int], asyncio.Task[ProcessOutcome]] = field(default_factory=dict)
    # Attempts cancelled lately (monotonic time of the notice): a request for one that was
    # still queued when its notice came is settled without running it.
    cancelled: dict[tuple[str, str, int], float] = field(default_factory=dict)

    async def on_cancel(self, notice: StepCancelled) -> None:
        attempt = (notice.execution_id, notice.step, notice.attempt)
        now = time.monotonic()
        self.cancelled[attempt] = now
        for old in [a for a, at in self.cancelled.items() if now - at > CANCELLED_MEMORY_SECONDS]:
            del self.cancelled[old]
        task = self.running.get(attempt)
        if task is not None and not task.done():
            log.info(
                "step_cancel_received",
                execution_id=notice.execution_id,
                step=notice.step,
                attempt=notice.attempt,
            )
            task.cancel()

    async def on_cli(self, request: StepRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=request.execution_id, step=request.step, attempt=request.attempt
        )
        if request.cli is None:
            raise InvalidInput("cli step request without a `cli` body")
        started = self.clock()
        attempt = (request.execution_id, request.step, request.attempt)
        if attempt in self.cancelled:
            log.info("step_skipped_cancelled")
            await self._publish(
                StepResult(
                    execution_id=request.execution_id,
                    step=request.step,
                    attempt=request.attempt,
                    outcome="cancelled",
                    error="cancelled before it started",
                    started_at=started,
                    finished_at=self.clock(),
                ),
                request,
            )
            return
        log.info("step_started", argv0=request.cli.argv[0], delivery=delivery.delivery)
        task = asyncio.create_task(
            run_process(
                request.cli.argv,
                env={**request.cli.env, "VIGIL_IDEMPOTENCY_KEY": request.idempotency_key},
                timeout=request.cli.timeout_seconds,
                output_limit=self.artifact_limit,
            )
        )
        self.running[attempt] = task
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                task.cancel()  # we are shutting down: kill the process, let it be redelivered
                raise
            if (current := asyncio.current_task()) is not None and current.cancelling():
                raise
            # Cancelled by a notice: the engine already recorded it; settle the message.
            result = StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                outcome="cancelled",
                error="cancelled",
                started_at=started,
                finished_at=self.clock(),
            )
        except PermanentError as exc:
            result = StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                outcome="failed",
                error=str(exc),
                started_at=started,
                finished_at=self.clock(),
            )
        else:
            state: StepOutcome
            error: str | None
            if outcome.timed_out:
                state, error = "timed_out", f"timed out after {request.cli.timeout_seconds:g}s"
            elif outcome.exit_code == 0:
                state, error = "succeeded", None
            else:
                state, error = "failed", f"exited with code {outcome.exit_code}"
            result = StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                outcome=state,
                output=await self._bounded_output(request, outcome),
                error=error,
                started_at=started,
                finished_at=self.clock(),
            )
        finally:
            self.running.pop(attempt, None)
        seconds = (result.finished_at - result.started_at).total_seconds()
        STEP_DURATION.labels(kind="cli", outcome=result.outcome).observe(seconds)
        STEPS_RUN.labels(kind="cli", outcome=result.outcome).inc()
        await self._publish(result, request)
        log.info("step_finished", outcome=result.outcome, seconds=round(seconds, 3))

    async def _publish(self, result: StepResult, request: StepRequest) -> None:
        await self.bus.publish(
            subjects.results(), result, msg_id=f"{request.idempotency_key}/result"
        )

    async def _bounded_output(self, request: StepRequest, outcome: ProcessOutcome) -> Output:
        """The step output, at most `output_limit` per stream; the rest goes to an artifact."""
        stdout = outcome.stdout[: self.output_limit]
        stderr = outcome.stderr[: self.output_limit]
        cut = stdout != outcome.stdout or stderr != outcome.stderr
        output: Output = {
            "exitCode": outcome.exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": cut or outcome.truncated,
            "artifactId": None,
        }
        if cut:
            artifact = Artifact(
                id=f"{request.idempotency_key}/output",
                execution_id=request.execution_id,
                step=request.step,
                kind="cli-output",
                content=f"--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}",
                truncated=outcome.truncated,
                created_at=self.clock(),
            )
            await self.store.put_artifact(artifact)
            output["artifactId"] = artifact.id
        return output
