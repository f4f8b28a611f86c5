"""How a handler's result becomes ack, nak-with-delay or term-and-dead-letter."""

from __future__ import annotations

import pytest

from vigil.common.errors import Conflict, InvalidInput, NotFound, PermanentError, TransientError
from vigil.common.outcomes import BACKOFF_CAP_SECONDS, Outcome, outcome_for

MAX_DELIVER = 10


def test_success_is_acked() -> None:
    assert outcome_for(None, delivery=1, max_deliver=MAX_DELIVER) == Outcome(action="ack")


def test_success_on_the_last_delivery_is_still_acked() -> None:
    outcome = outcome_for(None, delivery=MAX_DELIVER, max_deliver=MAX_DELIVER)

    assert outcome.action == "ack"
    assert not outcome.dead_letter


@pytest.mark.parametrize(
    "error", [PermanentError("bad"), InvalidInput("spec.x: bad"), NotFound("no such execution")]
)
def test_permanent_error_is_terminated_and_dead_lettered_on_first_delivery(
    error: PermanentError,
) -> None:
    outcome = outcome_for(error, delivery=1, max_deliver=MAX_DELIVER)

    assert outcome.action == "term"
    assert outcome.dead_letter
    assert outcome.reason == f"{type(error).__name__}: {error}"


@pytest.mark.parametrize(
    ("delivery", "delay"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0), (7, BACKOFF_CAP_SECONDS), (9, 60.0)],
)
def test_other_errors_are_nakked_with_exponential_capped_backoff(
    delivery: int, delay: float
) -> None:
    outcome = outcome_for(RuntimeError("boom"), delivery=delivery, max_deliver=MAX_DELIVER)

    assert outcome.action == "nak"
    assert outcome.delay == delay
    assert not outcome.dead_letter
    assert outcome.reason == "RuntimeError: boom"


def test_transient_error_without_retry_after_uses_backoff() -> None:
    outcome = outcome_for(Conflict("lost the race"), delivery=3, max_deliver=MAX_DELIVER)

    assert (outcome.action, outcome.delay) == ("nak", 4.0)


def test_transient_error_retry_after_is_honoured() -> None:
    error = TransientError("definitions not loaded", retry_after=2.5)

    outcome = outcome_for(error, delivery=5, max_deliver=MAX_DELIVER)

    assert (outcome.action, outcome.delay) == ("nak", 2.5)
    assert not outcome.dead_letter


@pytest.mark.parametrize("error", [RuntimeError("boom"), TransientError("busy", retry_after=1.0)])
def test_last_delivery_is_dead_lettered_instead_of_retried(error: Exception) -> None:
    outcome = outcome_for(error, delivery=MAX_DELIVER, max_deliver=MAX_DELIVER)

    assert outcome.action == "term"
    assert outcome.dead_letter
    assert outcome.delay is None
    assert outcome.reason is not None
    assert outcome.reason.startswith(f"gave up after {MAX_DELIVER} deliveries: ")
    assert str(error) in outcome.reason


def test_delivery_one_before_the_last_is_still_retried() -> None:
    outcome = outcome_for(RuntimeError("boom"), delivery=MAX_DELIVER - 1, max_deliver=MAX_DELIVER)

    assert outcome.action == "nak"
