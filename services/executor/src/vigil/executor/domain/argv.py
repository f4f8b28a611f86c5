"""What a cli step may hand to a process: the argv and environment a step runs with.

A NUL byte cannot be passed to a process (C strings end there): an argument or value with
one, usually rendered from an alert's label, fails the step at once, naming where. The
environment is an allow-list: a step sees `PATH`, `HOME`, `LANG` and `TZ` of the
executor's own environment and its own `env`, never the service's settings or secrets.
"""

from __future__ import annotations

from collections.abc import Mapping

INHERITED = ("PATH", "HOME", "LANG", "TZ")


def argv_problem(argv: list[str], env: Mapping[str, str]) -> str | None:
    """Why `argv` and `env` cannot reach a process (None: they can)."""
    for position, argument in enumerate(argv):
        if "\x00" in argument:
            return f"argument {position} of the command contains a NUL byte: {argument!r}"
    for name, value in env.items():
        if "\x00" in name or "\x00" in value or "=" in name or not name:
            return f"environment variable {name!r} cannot be set (a NUL byte, `=` or no name)"
    return None


def step_environment(own: Mapping[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed variables of `inherited`, then the step's own."""
    return {**{name: inherited[name] for name in INHERITED if name in inherited}, **own}
