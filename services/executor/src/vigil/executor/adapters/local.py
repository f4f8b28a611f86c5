"""Runs a cli step as a local process (embedded mode).

The argv is executed directly, never through a shell (unless the argv itself names one).
The process gets its own session, so a timeout or a cancellation kills the whole process
group, grandchildren included. stdout and stderr are read concurrently and kept up to a
bound; what is cut is counted and flagged as `truncated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

from vigil.common.errors import PermanentError

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessOutcome:
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(CHUNK):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_process(
    argv: list[str], *, env: dict[str, str], timeout: float, output_limit: int
) -> ProcessOutcome:
    """Run `argv` to completion or `timeout`; raise PermanentError if it cannot start."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        msg = f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        raise PermanentError(msg) from exc
    assert process.stdout is not None
    assert process.stderr is not None
    readers = asyncio.gather(
        _read_bounded(process.stdout, output_limit), _read_bounded(process.stderr, output_limit)
    )
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        timed_out = True
        _kill_group(process)
        await process.wait()
    except asyncio.CancelledError:
        _kill_group(process)
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
            await process.wait()
        raise
    # A grandchild may still hold the pipes open: do not wait for it beyond a moment.
    try:
        async with asyncio.timeout(2.0):
            (stdout, out_cut), (stderr, err_cut) = await readers
    except TimeoutError:
        _kill_group(process)
        (stdout, out_cut), (stderr, err_cut) = await readers
    return ProcessOutcome(
        exit_code=None if timed_out else process.returncode,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        truncated=out_cut or err_cut,
        timed_out=timed_out,
    )
