"""What a cli step may hand to a process (both runners check it before starting anything)."""

from __future__ import annotations

from vigil.executor.domain.argv import argv_problem, step_environment


def test_a_clean_argv_and_env_pass() -> None:
    assert argv_problem(["df", "-P", "--", "/"], {"LANG": "C"}) is None


def test_a_nul_byte_anywhere_is_named() -> None:
    assert argv_problem(["echo", "a\x00b"], {}) == (
        "argument 1 of the command contains a NUL byte: 'a\\x00b'"
    )
    assert argv_problem(["true"], {"X": "a\x00"}) == (
        "environment variable 'X' cannot be set (a NUL byte, `=` or no name)"
    )
    assert argv_problem(["true"], {"A=B": "x"}) is not None


def test_the_environment_is_an_allow_list_and_the_step_wins() -> None:
    inherited = {"PATH": "/bin", "HOME": "/root", "VIGIL_STORE_URL": "mongodb://x", "TZ": "UTC"}

    assert step_environment({"TZ": "Europe/Paris", "K": "v"}, inherited) == {
        "PATH": "/bin",
        "HOME": "/root",
        "TZ": "Europe/Paris",
        "K": "v",
    }
