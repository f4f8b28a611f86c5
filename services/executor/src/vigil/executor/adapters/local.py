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
import signal
from dataclasses import dataclass, field

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.messages import StepRequest
from vigil.executor.domain.argv import argv_problem, step_environment
from vigil.executor.domain.results import ProcessOutcome

CHUNK = 64 * 1024
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


@dataclass(slots=True)
class _Kept:
    """What a reader kept so far, so that a reader cut short still leaves its output."""

    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False


async def _read_bounded(stream: asyncio.StreamReader, limit: int, kept: _Kept) -> None:
    while chunk := await stream.read(CHUNK):
        room = limit - len(kept.data)
        if room > 0:
            kept.data += chunk[:room]
        if len(chunk) > room:
            kept.truncated = True


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol, plus a future set the moment the child exits.

    `Process.wait()` only returns once the pipes are closed too, and a background
    grandchild holding them would make a finished step wait for its timeout.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=CHUNK, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = transport

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _start(
    argv: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, _Protocol]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=step_environment(env, os.environ),
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


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
    starting = asyncio.ensure_future(_start(argv, env))
    try:
        process, protocol = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Let the start finish, then kill the group (asyncio alone would kill the child only).
        with contextlib.suppress(OSError):  # it failed to start: nothing to kill
            started, begun = await starting
            _kill_group(started)
            if begun.transport is not None:
                begun.transport.close()  # the pipes and the child's handle, now
        raise
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        msg = f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        raise PermanentError(msg) from exc
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = _Kept(), _Kept()
    readers = asyncio.gather(
        _read_bounded(process.stdout, output_limit, out),
        _read_bounded(process.stderr, output_limit, err),
    )
    stopped: asyncio.Future[object] = asyncio.ensure_future((cancel or asyncio.Event()).wait())
    try:
        await asyncio.wait(
            (protocol.exited, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        cancelled = stopped.done() and not protocol.exited.done()
        timed_out = not cancelled and not protocol.exited.done()
    except asyncio.CancelledError:
        _kill_group(process)
        readers.cancel()
        if protocol.transport is not None:
            protocol.transport.close()  # the pipes and the child's handle, now
        raise
    finally:
        stopped.cancel()
        # Grandchildren die with the step; their pipes close, so the readers finish.
        _kill_group(process)
    # A descendant that left the group (setsid) may still hold the pipes: bounded wait.
    _, pending = await asyncio.wait({readers}, timeout=PIPE_GRACE_SECONDS)
    if pending:
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await readers
        if protocol.transport is not None:
            protocol.transport.close()  # let go of the pipes the escaped process holds
        out.truncated = err.truncated = True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(PIPE_GRACE_SECONDS):
            await asyncio.shield(protocol.exited)
    return ProcessOutcome(
        exit_code=None if timed_out or cancelled else process.returncode,
        stdout=bytes(out.data).decode(errors="replace"),
        stderr=bytes(err.data).decode(errors="replace"),
        truncated=out.truncated or err.truncated,
        timed_out=timed_out,
        cancelled=cancelled,
    )
