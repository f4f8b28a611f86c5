"""The NATS credentials a service connects with (`ServiceSettings.bus_credentials`): a user
and a password from a file (or a variable), checked together, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.common.errors import InvalidInput
from vigil.common.settings import ServiceSettings, redacted_url


def settings(**env: str) -> ServiceSettings:
    return ServiceSettings.model_validate(env)


def test_no_user_means_an_anonymous_connection() -> None:
    assert settings().bus_credentials() is None


def test_the_password_is_read_from_its_file_at_connect(tmp_path: Path) -> None:
    secret = tmp_path / "engine.password"
    secret.write_text("s3cret-one\n")
    chosen = settings(VIGIL_NATS_USER="engine", VIGIL_NATS_PASSWORD_FILE=str(secret))
    first = chosen.bus_credentials()
    secret.write_text("s3cret-two\n")  # a rotated Secret: the next connection uses it
    second = chosen.bus_credentials()

    assert first is not None
    assert second is not None
    assert (first.user, first.password.get_secret_value()) == ("engine", "s3cret-one")
    assert second.password.get_secret_value() == "s3cret-two"
    assert "s3cret" not in repr(first)
    assert "s3cret" not in repr(chosen)


def test_the_password_may_come_from_a_variable() -> None:
    chosen = settings(VIGIL_NATS_USER="sink", VIGIL_NATS_PASSWORD="from-env")
    credentials = chosen.bus_credentials()
    assert credentials is not None
    assert credentials.password.get_secret_value() == "from-env"
    assert "from-env" not in repr(chosen)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"VIGIL_NATS_USER": "engine"}, "VIGIL_NATS_USER=engine needs a password"),
        ({"VIGIL_NATS_PASSWORD": "hunter2"}, "VIGIL_NATS_USER is not"),
        (
            {
                "VIGIL_NATS_USER": "engine",
                "VIGIL_NATS_PASSWORD": "hunter2",
                "VIGIL_NATS_PASSWORD_FILE": "/x",
            },
            "not both",
        ),
        ({"VIGIL_NATS_USER": "a.b", "VIGIL_NATS_PASSWORD": "hunter2"}, "only letters, digits"),
    ],
)
def test_incomplete_credentials_are_refused_naming_the_problem(
    env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        settings(**env)
    assert "hunter2" not in str(caught.value)


def test_a_password_file_that_cannot_be_used_is_named(tmp_path: Path) -> None:
    missing = settings(VIGIL_NATS_USER="engine", VIGIL_NATS_PASSWORD_FILE=str(tmp_path / "nowhere"))
    with pytest.raises(InvalidInput, match=r"nowhere: cannot read it \(No such file"):
        missing.bus_credentials()

    (tmp_path / "empty").write_text("\n")
    empty = settings(VIGIL_NATS_USER="engine", VIGIL_NATS_PASSWORD_FILE=str(tmp_path / "empty"))
    with pytest.raises(InvalidInput, match="empty: the file is empty"):
        empty.bus_credentials()


def test_a_url_is_shown_without_its_password() -> None:
    assert redacted_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert (
        redacted_url("nats://engine:hunter2@nats-0:4222,nats://nats-1:4222")
        == "nats://engine:***@nats-0:4222,nats://nats-1:4222"
    )


def test_an_entry_without_a_scheme_is_shown_without_its_password() -> None:
    """nats-py accepts `user:password@host:port`; it must not pass through as written."""
    assert redacted_url("engine:hunter2@nats-0:4222") == "engine:***@nats-0:4222"
    assert redacted_url("nats://a:4222,engine:hunter2@b:x") == "nats://a:4222,engine:***@b:x"
