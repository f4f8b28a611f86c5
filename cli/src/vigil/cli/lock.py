"""One `vigil up` per data directory: an exclusive `flock` on `<data-dir>/vigil.lock`.

The kernel drops the lock with the process that held it, however it ended (SIGKILL
included), so a lock left by a killed run is never stale: the next run takes it. The file
holds the holder's PID, for the message that refuses a second run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class DataDirInUse(RuntimeError):
    pass


def private_dir(path: Path) -> int | None:
    """Create `path` readable by its owner only (the store, the bus's files and the API
    token live there); an existing one open to others is closed. Returns the mode it had
    when it was changed, else None."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    path.chmod(0o700)
    return mode


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    path = data_dir / "vigil.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the services
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            msg = (
                f"another vigil up (PID {holder}) is running on {data_dir}: stop it, or "
                "give this one its own --data-dir"
            )
            raise DataDirInUse(msg) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
