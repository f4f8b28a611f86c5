"""Runs a cli step as a local process (embedded mode): `LocalProcessRunner`.

The argv is executed directly, never through a shell (unless the argv itself names one).
The process gets its own session, so its end, a timeout or a cancellation kills the whole
process group: a background grandchild does not outlive the step or hold its output open.
stdout and stderr are read concurrently and kept up to a bound; what is cut is flagged as
`truncated`. The process sees `PATH`, `HOME`, `LANG` and `TZ` of the executor's environment,
the step's own `env` and `VIGIL_IDEMPOTENCY_KEY`: nothing else of the service's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.messages import StepRequest
from vigil.executor.adapters.spawning import Child, spawn
from vigil.executor.domain.argv import argv_problem, step_environment
from vigil.executor.domain.results import ProcessOutcome

PIPE_GRACE_SECONDS = 2.0

__all__ = ["LocalProcessRunner", "ProcessOutcome", "run_process"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalProcessRunner:
    """The `StepRunner` of `cli` steps in embedded mode; keeps `output_limit` bytes per stream."""

    output_limit: int

    async def run(self, request: StepRequest, cancel: asyncio.Event) -> ProcessOutcome:
        if request.cli is None:
            raise InvalidInput("cli step request without a `cli` body")
        env = {**request.cli.env, "VIGIL_IDEMPOTENCY_KEY": request.idempotency_key}
        problem = argv_problem(request.cli.argv, env)
        if problem is not None:
            return ProcessOutcome(exit_code=None, not_started=problem)
        try:
            return await run_process(
                request.cli.argv,
                env=env,
                timeout=request.cli.timeout_seconds,
                output_limit=self.output_limit,
                cancel=cancel,
            )
        except PermanentError as exc:
            return ProcessOutcome(exit_code=None, not_started=str(exc))

    async def release(self, request: StepRequest) -> None:
        """Nothing outlives a local process."""


async def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    output_limit: int,
    cancel: asyncio.Event | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion, `timeout` or `cancel`; raise PermanentError if it cannot
    start.

    When the child exits, or times out, or is cancelled (the event, or the caller's task),
    its whole process group is killed: nothing a step started outlives the step.
    """
    try:
        child = spawn(argv, step_environment(env, os.environ), output_limit=output_limit)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        msg = f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        raise PermanentError(msg) from exc
    try:
        return await _outcome(child, timeout=timeout, cancel=cancel)
    finally:
        child.close_pipes()


async def _outcome(child: Child, *, timeout: float, cancel: asyncio.Event | None) -> ProcessOutcome:
    """Wait for the child's exit, `timeout` or `cancel`; then its group is killed and what
    its pipes held is read (for a bounded time)."""
    stopped: asyncio.Future[object] = asyncio.ensure_future((cancel or asyncio.Event()).wait())
    try:
        await asyncio.wait(
            (child.exited, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        cancelled = stopped.done() and not child.exited.done()
        timed_out = not cancelled and not child.exited.done()
    finally:
        stopped.cancel()
        # Grandchildren die with the step (or the caller's cancellation): their pipes
        # close, so the readers finish.
        child.kill_group()
    out, err = child.stdout, child.stderr
    # A descendant that left the group (setsid) may still hold the pipes: bounded wait.
    reading = [done for done in (out.done, err.done) if not done.done()]
    if reading and (await asyncio.wait(reading, timeout=PIPE_GRACE_SECONDS))[1]:
        child.close_pipes()  # let go of the pipes the escaped process holds
        out.kept.truncated = err.kept.truncated = True
    if not child.exited.done():  # killed just now: its exit comes at once
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PIPE_GRACE_SECONDS):
                await asyncio.shield(child.exited)
    return ProcessOutcome(
        exit_code=None if timed_out or cancelled else child.returncode,
        stdout=bytes(out.kept.data).decode(errors="replace"),
        stderr=bytes(err.kept.data).decode(errors="replace"),
        truncated=out.kept.truncated or err.kept.truncated,
        timed_out=timed_out,
        cancelled=cancelled,
    )
