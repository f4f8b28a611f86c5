"""Starting a step's process at the lowest cost the event loop allows: `spawn`.

`posix_spawn` (a vfork and an exec, no Python between them) instead of asyncio's subprocess
machinery (a `Popen`, a transport, a protocol and a pipe transport per stream, a child
watcher): about half the executor's CPU per launch (0.37 instead of 0.69 ms for `true`).
What `asyncio.create_subprocess_exec(..., start_new_session=True)` gave is kept:

- the program is looked up on the `PATH` of the environment the process gets (not the
  executor's), as `subprocess` does; a missing program is `FileNotFoundError`, one that
  exists but cannot be executed `PermissionError`;
- stdin is /dev/null; stdout and stderr are pipes the loop reads; every other descriptor
  is closed in the child; the child starts a session of its own (its pid is its group);
- SIGPIPE and SIGXFSZ are back to their default in the child (Python ignores SIGPIPE);
- the exit is seen through a pidfd registered with the loop, and the child is reaped then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

CHUNK = 64 * 1024
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# Every descriptor above stderr closed in the child (glibc >= 2.34). Without it, only those
# not made close-on-exec would leak: Python makes all of its own so (PEP 446).
CLOSE_THE_REST: list[tuple[int, int]] = (
    [(os.POSIX_SPAWN_CLOSEFROM, 3)] if hasattr(os, "POSIX_SPAWN_CLOSEFROM") else []
)


def executable(name: str, env: Mapping[str, str]) -> str:
    """The path `name` runs as: itself if it has a directory, else the first executable
    regular file of that name on `env`'s `PATH` (the default path without one)."""
    if os.sep in name:
        return name
    denied: PermissionError | None = None
    for folder in os.get_exec_path(env):
        # Strings, not pathlib: this runs for every step, and Path objects cost 0.05 ms.
        path = f"{folder.rstrip(os.sep)}{os.sep}{name}" if folder else name
        try:
            mode = os.stat(path).st_mode  # noqa: PTH116 - a str path, as above
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            denied = denied or exc
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            return path
        denied = denied or PermissionError(13, os.strerror(13), path)
    if denied is not None:
        raise denied
    raise FileNotFoundError(2, os.strerror(2), name)


@dataclass(slots=True)
class Kept:
    """What one output stream kept so far (a reader cut short still leaves its output)."""

    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False


class PipeReader:
    """Reads one pipe from the loop into `kept`, keeping `limit` bytes and draining the
    rest; `done` is set at end of file (or when closed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, limit: int) -> None:
        self.kept = Kept()
        self.done: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._fd = fd
        self._limit = limit
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            self.close()
            return
        kept = self.kept
        room = self._limit - len(kept.data)
        if room > 0:
            kept.data += chunk[:room]
        if len(chunk) > room:
            kept.truncated = True

    def close(self) -> None:
        """Stop reading and let go of the pipe (idempotent)."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if not self.done.done():
            self.done.set_result(None)


class Child:
    """A spawned process: its pid (= its process group), its exit, its two output pipes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pid: int, out: int, err: int, *, limit: int
    ) -> None:
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)  # first: when it fails, nothing is registered yet
        self._loop = loop
        self.exited: asyncio.Future[int] = loop.create_future()  # the return code
        loop.add_reader(self._pidfd, self._reap)
        self.stdout = PipeReader(loop, out, limit)
        self.stderr = PipeReader(loop, err, limit)

    def _reap(self) -> None:
        waited, status = os.waitpid(self.pid, os.WNOHANG)
        if waited == 0:
            return  # not exited after all
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if not self.exited.done():
            self.exited.set_result(os.waitstatus_to_exitcode(status))

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group (the child and what it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        """Let go of both output pipes now (an escaped descendant may still hold them).
        The exit is still reaped when it comes."""
        self.stdout.close()
        self.stderr.close()


def spawn(argv: list[str], env: Mapping[str, str], *, output_limit: int) -> Child:
    """Start `argv` with exactly the environment `env`, in a session of its own.

    Raises FileNotFoundError, PermissionError or NotADirectoryError if it cannot start.
    """
    loop = asyncio.get_running_loop()
    path = executable(argv[0], env)
    out_read, out_write = os.pipe()  # both ends close on exec (PEP 446); dup2 clears it
    err_read, err_write = os.pipe()
    try:
        pid = os.posix_spawn(
            path,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_write, 1),
                (os.POSIX_SPAWN_DUP2, err_write, 2),
                *CLOSE_THE_REST,
            ],
            setsid=True,
            setsigdef=DEFAULT_SIGNALS,
        )
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    try:
        return Child(loop, pid, out_read, err_read, limit=output_limit)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        os.close(out_read)
        os.close(err_read)
        raise
