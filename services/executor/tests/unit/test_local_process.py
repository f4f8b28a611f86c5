"""`run_process`, the executor's local runner for cli steps, driving real subprocesses.

What a workflow author relies on: the exit code and both output streams come back, the argv
never meets a shell, the step sees its own env and an allow-list of the executor's (never
its settings or secrets), output is bounded, and a
timeout or a cancelled step leaves no process of the step running — grandchildren included.

Processes that must be proven dead write their pids to a file; the tests then wait, with a
deadline, until the kernel no longer runs them. Where a test needs the runner to be at a
given point, the schedule is forced rather than hoped for:

- "the runner is waiting for the process": the child first writes 1 MiB to stdout, which it
  can only finish once the runner's readers drain it, and the readers start right before
  the runner waits;
- "the runner has not got the process yet": the test yields to the event loop one
  iteration at a time until the child exists, then holds the loop, as a busy handler would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vigil.common.errors import PermanentError
from vigil.common.messages import CliStep, StepRequest
from vigil.executor.adapters.local import LocalProcessRunner, ProcessOutcome, run_process

LIMIT = 64 * 1024
GONE_WITHIN_SECONDS = 10.0
PIDS_WRITTEN_WITHIN_SECONDS = 10.0

# Shell snippets for `sh -c SCRIPT sh PIDS_FILE`. RECORD_PIDS starts a grandchild sleeping
# for a minute and records "<sh pid> <grandchild pid>" in $1 (renamed into place whole).
RECORD_PIDS = 'sleep 60 & echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"'
DRAINED_FIRST = "head -c 1048576 /dev/zero"  # returns once the runner's readers drained it
SPAWNS_GRANDCHILD = f"{RECORD_PIDS}; sleep 60"  # a step that would run for a minute
WAITED_ON_THEN_SPAWNS_GRANDCHILD = f"{DRAINED_FIRST}; {SPAWNS_GRANDCHILD}"
WAITED_ON_THEN_EXITS_LEAVING_GRANDCHILD = f"{DRAINED_FIRST}; {RECORD_PIDS}; exit 0"


def _state(pid: int) -> str:
    """The kernel's one-letter state of `pid` (R, S, Z …), or "" once it does not exist."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return ""
    # Field 3, after the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0]


def _is_gone(pid: int) -> bool:
    """True once `pid` no longer runs.

    A killed grandchild is an orphan, reaped by PID 1 on its own schedule (in a container
    that can take a few seconds); until then the kernel shows it as a zombie: dead, not
    running. Either state means the process is gone.
    """
    return _state(pid) in {"", "Z", "X"}


async def _wait_until_gone(*pids: int, within: float = GONE_WITHIN_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not all(_is_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            alive = [pid for pid in pids if not _is_gone(pid)]
            pytest.fail(f"processes {alive} still run {within} s after the step ended")
        await asyncio.sleep(0.02)


def _written_pids(path: Path) -> list[int] | None:
    """The pids the child recorded in `path`, or None if it has not yet."""
    try:
        return [int(pid) for pid in path.read_text().split()]
    except FileNotFoundError:
        return None


async def _read_pids(path: Path, *, within: float = PIDS_WRITTEN_WITHIN_SECONDS) -> list[int]:
    deadline = time.monotonic() + within
    while (pids := _written_pids(path)) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the child did not write its pids to {path} within {within} s")
        await asyncio.sleep(0.01)
    return pids


def _hold_the_loop_until(condition: Callable[[], bool], what: str, *, within: float) -> None:
    """Block the event loop (on purpose) until `condition()` holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        time.sleep(0.005)


def _children_of_this_process() -> list[int]:
    """Pids whose parent is this process (the runner's child, once it is forked)."""
    me = os.getpid()
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            children.append(int(entry.name))
    return children


async def _yield_until_forked(*, within: float = 5.0) -> int:
    """Let the loop run one iteration at a time until the runner has forked its child."""
    deadline = time.monotonic() + within
    while not (children := _children_of_this_process()):
        if time.monotonic() > deadline:
            pytest.fail(f"the runner did not start a process within {within} s")
        await asyncio.sleep(0)
    (child,) = children
    return child


@pytest.fixture
def pids_file(tmp_path: Path) -> Iterator[Path]:
    """Where a test's `sh` records "<sh pid> <grandchild pid>".

    A test that exposes a leak must not leave a minute-long `sleep` behind: on teardown the
    grandchild's group is killed, but only if the grandchild still runs in that group, so a
    recycled pid is never hit.
    """
    path = tmp_path / "pids"
    yield path
    pids = _written_pids(path)
    if pids is None:
        return
    group, grandchild = pids
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if not _is_gone(grandchild) and os.getpgid(grandchild) == group:
            os.killpg(group, signal.SIGKILL)


async def test_exit_code_stdout_and_stderr_are_captured_separately() -> None:
    outcome = await run_process(
        ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
        env={},
        timeout=10.0,
        output_limit=LIMIT,
    )

    assert outcome.exit_code == 3
    assert outcome.stdout == "to-stdout\n"
    assert outcome.stderr == "to-stderr\n"
    assert outcome.truncated is False
    assert outcome.timed_out is False


async def test_a_successful_command_reports_exit_code_zero() -> None:
    outcome = await run_process(
        [sys.executable, "-c", "print('fine')"], env={}, timeout=10.0, output_limit=LIMIT
    )

    assert (outcome.exit_code, outcome.stdout, outcome.timed_out) == (0, "fine\n", False)


@pytest.mark.parametrize(
    "argument",
    [
        "$(echo hi); rm -rf /",
        "`id`",
        "*",
        "a b  c",
        "x' || true; '",
        "$HOME",
    ],
)
async def test_arguments_reach_the_program_literally_without_a_shell(argument: str) -> None:
    """Shell syntax in an argument (substitution, globs, quoting, variables) is not interpreted."""
    outcome = await run_process(
        ["printf", "%s", argument], env={}, timeout=10.0, output_limit=LIMIT
    )

    assert outcome.exit_code == 0
    assert outcome.stdout == argument


async def test_a_step_sees_only_the_allow_listed_environment_and_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PATH, HOME, LANG and TZ come from the executor; its settings and secrets never do."""
    monkeypatch.setenv("VIGIL_STORE_URL", "mongodb://vigil:secret@db/vigil")
    monkeypatch.setenv("CANARY_API_KEY", "sk-canary")
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.setenv("PATH_OVERRIDDEN", "from-executor")
    script = "import json, os; print(json.dumps(dict(os.environ), sort_keys=True))"

    outcome = await run_process(
        [sys.executable, "-c", script],
        env={"VIGIL_TEST_STEP": "from-step", "TZ": "UTC"},
        timeout=10.0,
        output_limit=LIMIT,
    )

    assert outcome.exit_code == 0, outcome.stderr
    seen = json.loads(outcome.stdout)
    seen.pop("LC_CTYPE", None)  # the interpreter itself may set it (PEP 538)
    expected = {"PATH": os.environ["PATH"], "VIGIL_TEST_STEP": "from-step", "TZ": "UTC"}
    expected |= {k: os.environ[k] for k in ("HOME", "LANG") if k in os.environ}
    assert seen == expected


async def test_a_nul_byte_in_an_argument_fails_the_step_at_once_naming_it() -> None:
    request = StepRequest(
        execution_id="01EX",
        namespace="ops",
        workflow="disk",
        step="measure",
        attempt=1,
        idempotency_key="01EX/measure/1",
        cli=CliStep(argv=["df", "-P", "/mnt/\x00x"], timeout_seconds=10),
    )

    outcome = await LocalProcessRunner(output_limit=LIMIT).run(request, asyncio.Event())

    assert outcome.not_started == ("argument 2 of the command contains a NUL byte: '/mnt/\\x00x'")


async def test_the_program_is_found_on_the_path_the_step_sets(tmp_path: Path) -> None:
    """As `subprocess` does: the step's own PATH, not the executor's, names where to look."""
    program = tmp_path / "vigil-step-only-here"
    program.write_text("#!/bin/sh\necho found\n")
    program.chmod(0o755)

    outcome = await run_process(
        ["vigil-step-only-here"],
        env={"PATH": f"{tmp_path}:{os.environ['PATH']}"},
        timeout=10.0,
        output_limit=LIMIT,
    )

    assert (outcome.exit_code, outcome.stdout) == (0, "found\n")


async def test_a_step_writing_to_a_closed_pipe_dies_of_sigpipe_as_in_a_shell() -> None:
    """The executor ignores SIGPIPE (Python does); a step gets the default back, so
    `yes | head -n 1` ends quietly instead of `yes` complaining of a broken pipe."""
    outcome = await run_process(
        ["sh", "-c", "yes | head -n 1"], env={}, timeout=10.0, output_limit=LIMIT
    )

    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (0, "y\n", "")


async def test_a_descriptor_of_the_executor_does_not_reach_the_step(tmp_path: Path) -> None:
    """Not even one left inheritable (a C library's, say): the step gets stdin, stdout and
    stderr only."""
    opened = os.open(tmp_path / "executor-only", os.O_CREAT | os.O_WRONLY)
    leaked = os.dup2(opened, 200, inheritable=True)
    script = "import os; print(' '.join(sorted(os.listdir('/proc/self/fd'))))"
    try:
        outcome = await run_process(
            [sys.executable, "-c", script], env={}, timeout=10.0, output_limit=LIMIT
        )
    finally:
        os.close(opened)
        os.close(leaked)

    assert outcome.exit_code == 0, outcome.stderr
    assert str(leaked) not in outcome.stdout.split()
    assert {"0", "1", "2"} <= set(outcome.stdout.split())


async def test_stdin_is_empty_so_a_reading_command_does_not_hang() -> None:
    outcome = await run_process(["cat"], env={}, timeout=10.0, output_limit=LIMIT)

    assert (outcome.exit_code, outcome.stdout, outcome.timed_out) == (0, "", False)


async def test_output_beyond_the_limit_is_cut_and_flagged_while_the_process_finishes() -> None:
    """A megabyte on stdout is drained to the end (the child never blocks on a full pipe)."""
    script = "import sys; sys.stdout.write('x' * 1_000_000); sys.stdout.flush(); print('end')"

    outcome = await run_process(
        [sys.executable, "-c", script], env={}, timeout=20.0, output_limit=1000
    )

    assert outcome.exit_code == 0
    assert outcome.timed_out is False
    assert outcome.truncated is True
    assert outcome.stdout == "x" * 1000


async def test_stderr_beyond_the_limit_is_cut_and_flagged_too() -> None:
    script = "import sys; sys.stderr.write('e' * 200_000); print('short')"

    outcome = await run_process(
        [sys.executable, "-c", script], env={}, timeout=20.0, output_limit=500
    )

    assert outcome.exit_code == 0
    assert outcome.truncated is True
    assert outcome.stdout == "short\n"
    assert outcome.stderr == "e" * 500


async def test_output_exactly_at_the_limit_is_not_flagged_as_truncated() -> None:
    outcome = await run_process(["printf", "%s", "hello"], env={}, timeout=10.0, output_limit=5)

    assert (outcome.stdout, outcome.truncated) == ("hello", False)


async def test_timeout_kills_the_whole_process_group_and_returns_promptly(
    pids_file: Path,
) -> None:
    started = time.monotonic()

    outcome = await run_process(
        ["sh", "-c", SPAWNS_GRANDCHILD, "sh", str(pids_file)],
        env={},
        timeout=0.5,
        output_limit=LIMIT,
    )
    elapsed = time.monotonic() - started

    assert outcome.timed_out is True
    assert outcome.exit_code is None
    assert elapsed < 3.0, f"a 0.5 s timeout took {elapsed:.2f} s to return"
    child, grandchild = await _read_pids(pids_file, within=0.0)
    await _wait_until_gone(child, grandchild)


async def test_output_written_before_a_timeout_is_kept() -> None:
    outcome = await run_process(
        ["sh", "-c", "echo partial; sleep 60"], env={}, timeout=0.5, output_limit=LIMIT
    )

    assert outcome.timed_out is True
    assert outcome.stdout == "partial\n"


async def test_cancelling_the_awaiting_task_kills_the_whole_process_group(
    pids_file: Path,
) -> None:
    running = asyncio.create_task(
        run_process(
            ["sh", "-c", WAITED_ON_THEN_SPAWNS_GRANDCHILD, "sh", str(pids_file)],
            env={},
            timeout=60.0,
            output_limit=LIMIT,
        )
    )
    child, grandchild = await _read_pids(pids_file)

    running.cancel()
    async with asyncio.timeout(5.0):
        with pytest.raises(asyncio.CancelledError):
            await running

    await _wait_until_gone(child, grandchild)


async def test_a_missing_executable_is_a_permanent_error_naming_it() -> None:
    with pytest.raises(PermanentError, match="vigil-no-such-command-4711"):
        await run_process(
            ["vigil-no-such-command-4711", "--help"], env={}, timeout=10.0, output_limit=LIMIT
        )


async def test_a_file_without_execute_permission_is_a_permanent_error_naming_it(
    tmp_path: Path,
) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)

    with pytest.raises(PermanentError, match=r"not-executable\.sh"):
        await run_process([str(script)], env={}, timeout=10.0, output_limit=LIMIT)


# --- a child that exits while its background grandchild keeps stdout/stderr open -------
#
# `sh -c 'daemon & echo started'` exits at once; the module promises to give the
# grandchild "a moment" (2 s) and then kill the group. What happens instead depends on
# whether asyncio learnt of the exit before or after the runner called `process.wait()`.


async def test_a_child_exiting_while_waited_on_leaving_a_grandchild_reports_its_exit_code(
    pids_file: Path,
) -> None:
    argv = ["sh", "-c", WAITED_ON_THEN_EXITS_LEAVING_GRANDCHILD, "sh", str(pids_file)]
    started = time.monotonic()

    outcome = await run_process(argv, env={}, timeout=5.0, output_limit=16)
    elapsed = time.monotonic() - started

    _, grandchild = await _read_pids(pids_file, within=0.0)
    await _wait_until_gone(grandchild)
    assert outcome.timed_out is False, f"reported as timed out after {elapsed:.1f} s"
    assert outcome.exit_code == 0
    assert elapsed < 4.5


async def _end_runner(running: asyncio.Task[ProcessOutcome], pids_file: Path) -> None:
    """If a test left the runner hanging: kill its process group so the task can end."""
    if running.done():
        return
    pids = _written_pids(pids_file)
    if pids is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pids[0], signal.SIGKILL)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(running, timeout=5.0)


async def test_a_child_that_exited_before_the_wait_leaving_a_grandchild_reports_its_exit_code(
    pids_file: Path,
) -> None:
    """The exit is known before the runner waits (its loop was busy): 2 s grace, then kill."""
    argv = ["sh", "-c", f"{RECORD_PIDS}; exit 0", "sh", str(pids_file)]
    running = asyncio.create_task(run_process(argv, env={}, timeout=10.0, output_limit=LIMIT))
    try:
        child = await _yield_until_forked()
        _hold_the_loop_until(lambda: _is_gone(child), "the child's exit", within=5.0)
        _, grandchild = _written_pids(pids_file) or [0, 0]
        started = time.monotonic()

        try:
            async with asyncio.timeout(8.0):
                outcome = await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            pytest.fail("run_process raised CancelledError, but nobody cancelled it")
        elapsed = time.monotonic() - started

        await _wait_until_gone(grandchild)
        assert outcome.exit_code == 0
        assert outcome.timed_out is False
        assert elapsed < 5.0
    finally:
        await _end_runner(running, pids_file)


async def test_cancelling_while_the_process_is_being_started_kills_the_whole_group(
    pids_file: Path,
) -> None:
    running = asyncio.create_task(
        run_process(
            ["sh", "-c", SPAWNS_GRANDCHILD, "sh", str(pids_file)],
            env={},
            timeout=60.0,
            output_limit=LIMIT,
        )
    )
    try:
        child = await _yield_until_forked()
        _hold_the_loop_until(pids_file.exists, "the child recording its pids", within=5.0)
        _, grandchild = _written_pids(pids_file) or [0, 0]

        running.cancel()
        finished, _ = await asyncio.wait({running}, timeout=5.0)

        assert running in finished, "the cancelled runner did not finish within 5 s"
        assert running.cancelled()
        await _wait_until_gone(child, grandchild, within=5.0)
    finally:
        await _end_runner(running, pids_file)


async def test_the_cancel_event_kills_the_whole_group_and_reports_the_step_cancelled(
    pids_file: Path,
) -> None:
    """A cancellation notice (the runner port's `cancel`) ends the step now, not at its timeout."""
    cancel = asyncio.Event()
    running = asyncio.create_task(
        run_process(
            ["sh", "-c", SPAWNS_GRANDCHILD, "sh", str(pids_file)],
            env={},
            timeout=60.0,
            output_limit=LIMIT,
            cancel=cancel,
        )
    )
    try:
        shell, grandchild = await _read_pids(pids_file)
        started = time.monotonic()

        cancel.set()
        outcome = await asyncio.wait_for(running, timeout=10.0)

        assert outcome.cancelled is True
        assert outcome.timed_out is False
        assert outcome.exit_code is None
        assert time.monotonic() - started < 5.0
        await _wait_until_gone(shell, grandchild)
    finally:
        await _end_runner(running, pids_file)
