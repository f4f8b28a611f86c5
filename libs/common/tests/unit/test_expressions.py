"""CEL booleans: evaluation over nested dicts, has(), and the errors they raise."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.expressions import (
    MAX_EXPRESSION_CHARS,
    ExpressionError,
    compile_expression,
    evaluate_bool,
)

CONTEXT: dict[str, Any] = {
    "alert": {
        "status": "firing",
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-1"},
    },
    "steps": {
        "describe": {
            "state": "succeeded",
            "output": {"exitCode": 0, "stdout": "Last State: OOMKilled", "truncated": False},
        },
        "oom": {"state": "skipped", "output": None},
    },
    "execution": {"id": "ex-1", "error": None},
    "workflow": {"name": "pod-crashloop", "namespace": "shop", "labels": {}},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('steps.describe.output.stdout.contains("OOMKilled")', True),
        ('steps.describe.output.stdout.contains("Evicted")', False),
        ("steps.describe.output.exitCode == 0", True),
        ("!steps.describe.output.truncated", True),
        ('alert.labels.namespace != "kube-system"', True),
        ('alert.status == "firing" && alert.labels.pod.startsWith("api-")', True),
        ('alert.labels.alertname.matches("^Kube.*Looping$")', True),
        ('steps.oom.state == "skipped"', True),
        ("steps.oom.output == null", True),
        ('alert.labels.exists(k, k == "pod")', True),
        ('"pod" in alert.labels', True),
    ],
)
def test_evaluates_booleans_over_the_nested_context(source: str, expected: bool) -> None:
    assert evaluate_bool(source, CONTEXT) is expected


def test_has_tests_an_optional_key_without_failing() -> None:
    assert evaluate_bool("has(alert.labels.pod)", CONTEXT) is True
    assert evaluate_bool("has(alert.labels.team)", CONTEXT) is False
    assert evaluate_bool('has(alert.labels.team) && alert.labels.team == "ops"', CONTEXT) is False


def test_missing_key_raises_expression_error_suggesting_has() -> None:
    with pytest.raises(ExpressionError, match=r"no such key 'team'.*has\(\)"):
        evaluate_bool('alert.labels.team == "ops"', CONTEXT)


@pytest.mark.parametrize(
    "source", ["alert.labels.pod", "steps.describe.output.exitCode", "alert.labels"]
)
def test_non_boolean_result_raises_expression_error(source: str) -> None:
    with pytest.raises(ExpressionError, match="must yield a boolean"):
        evaluate_bool(source, CONTEXT)


def test_type_mismatch_raises_expression_error() -> None:
    with pytest.raises(ExpressionError, match="failed"):
        evaluate_bool("alert.labels.pod > 1", CONTEXT)


def test_member_of_a_null_output_raises_expression_error() -> None:
    with pytest.raises(ExpressionError):
        evaluate_bool("steps.oom.output.result", CONTEXT)


def test_division_by_zero_raises_expression_error() -> None:
    with pytest.raises(ExpressionError):
        evaluate_bool("steps.describe.output.exitCode / 0 == 1", CONTEXT)


def test_list_index_out_of_range_raises_expression_error() -> None:
    with pytest.raises(ExpressionError):
        evaluate_bool("[1, 2][5] == 1", CONTEXT)


def test_expression_error_is_permanent_so_it_is_not_retried() -> None:
    with pytest.raises(PermanentError):
        evaluate_bool("alert.labels.pod", CONTEXT)


@pytest.mark.parametrize("source", ["1 +", 'alert.status == "firing', "alert..labels"])
def test_syntax_error_raises_invalid_input_at_compile(source: str) -> None:
    with pytest.raises(InvalidInput, match="does not compile"):
        compile_expression(source)


def test_unknown_root_variable_raises_invalid_input_at_compile() -> None:
    with pytest.raises(InvalidInput, match=r"unknown name\(s\) alrt; available: alert"):
        compile_expression('alrt.status == "firing"')


def test_evaluating_an_unknown_root_variable_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        evaluate_bool("nope == 1", CONTEXT)


def test_macro_bound_variables_are_not_reported_as_unknown() -> None:
    compile_expression('alert.labels.all(k, k != "") && [1, 2].exists(x, x > 1)')


def test_unknown_root_variable_is_reported_even_when_a_macro_is_used() -> None:
    with pytest.raises(InvalidInput, match="alrt"):
        compile_expression('alrt.labels.exists(k, k == "pod")')


def test_compile_honours_a_narrower_set_of_allowed_names() -> None:
    with pytest.raises(InvalidInput, match="unknown name"):
        compile_expression('alert.status == "firing"', allowed=frozenset({"body"}))


def test_a_condition_over_the_length_limit_is_invalid_input_not_a_parser_panic() -> None:
    # Past 65,535 characters, a parse error made the bindings panic (a BaseException).
    longest = "true" + " " * (MAX_EXPRESSION_CHARS - 4)
    assert evaluate_bool(longest, CONTEXT) is True

    with pytest.raises(InvalidInput, match=r"is 70003 characters long; the limit is 4096"):
        compile_expression("x" + " " * 70_000 + " +")
