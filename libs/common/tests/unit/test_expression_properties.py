"""Properties of CEL conditions over arbitrary input: any text compiles or is an
InvalidInput; a compiled condition evaluates to a boolean or fails with an
ExpressionError, whatever the alert's labels; and evaluating takes bounded time. Never
another exception (the Rust bindings' panics included)."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.errors import InvalidInput
from vigil.common.expressions import ExpressionError, compile_expression, evaluate_bool

LABELS = st.dictionaries(
    st.sampled_from(["pod", "n", "severity", "app.kubernetes.io/name"]),
    st.one_of(st.text(max_size=12), st.from_regex(r"-?[0-9]{1,20}", fullmatch=True)),
)

_ATOMS = st.sampled_from(
    [
        "alert.labels.pod",
        'alert.labels["app.kubernetes.io/name"]',
        "alert.status",
        "alert.labels",
        "steps.check.output.exitCode",
        '"firing"',
        '"a+b"',
        "1",
        "-9223372036854775808",
        "1.5",
        "0",
        "true",
        "null",
        "[1, 2, 3]",
        '{"a": 1}',
        "b'x'",
        "1u",
    ]
)
_CALLS = [
    "size({})",
    "has({}.pod)",
    "int({})",
    "string({})",
    "double({})",
    "{}.matches('(a+)+$')",
    "{}.startsWith('a')",
    "{}.contains('-')",
    "!{}",
    "-{}",
    "({})",
    "[{}]",
    "{}.exists(x, x == 'pod')",
    "{}.all(x, x != '')",
    "{}.map(x, [x, x])",
    "{}.filter(x, true)",
]
_OPERATORS = ["&&", "||", "==", "!=", "<", ">=", "+", "-", "*", "/", "%", "in"]
EXPRESSIONS = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.builds(lambda call, e: call.format(e), st.sampled_from(_CALLS), inner),
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(_OPERATORS), inner),
        st.builds(lambda c, a, b: f"{c} ? {a} : {b}", inner, inner, inner),
    ),
    max_leaves=10,
)
SOURCES = st.one_of(
    EXPRESSIONS,
    st.text(max_size=60),
    st.builds(lambda d: "(" * d + "true" + ")" * d, st.integers(1, 40_000)),
    st.builds(lambda n: "x" + " " * n + " +", st.integers(0, 70_000)),
)


def context(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "alert": {"status": "firing", "labels": labels},
        "steps": {"check": {"state": "succeeded", "output": {"exitCode": 0}}},
    }


@BUDGETS
def test_any_condition_compiles_or_is_invalid_input_then_decides_or_fails_cleanly(
    budget: str,
) -> None:
    @given(SOURCES, LABELS)
    @example("x" + " " * 70_000 + " +", {})  # a parse error past column 65,535
    @example("(" * 100_000 + "true" + ")" * 100_000, {})
    @example("int(alert.labels.n) * 2 > 0", {"n": "9223372036854775807"})
    @example("[1, 2, 3].map(x, [1, 2, 3].map(y, [1, 2, 3].map(z, x * y * z))) == []", {})
    def holds(source: str, labels: dict[str, str]) -> None:
        try:
            compile_expression(source)
        except InvalidInput as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert refusal.startswith("CEL ")
            return
        try:
            decided = evaluate_bool(source, context(labels))
        except ExpressionError as exc:
            failure = str(exc)
        else:
            assert isinstance(decided, bool)
            return
        assert failure.startswith("CEL ")

    check(budget, holds)
