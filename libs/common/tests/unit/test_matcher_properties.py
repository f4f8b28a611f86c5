"""Properties of matchers over arbitrary input: the parser fails only with InvalidInput,
the string form parses back to the same matcher, RE2 decides as Python's `re` does on the
syntax they share, and matching takes bounded time even for patterns that make a
backtracking engine take forever."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.errors import InvalidInput
from vigil.common.matchers import Matcher, parse_matcher

OPERATORS = st.sampled_from(["=", "!=", "=~", "!~"])
# Any text, lone surrogates included (label values come from JSON and YAML).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)

# Regular expressions in the syntax RE2 and Python's `re` share, built from small atoms.
_ATOMS = st.sampled_from(["a", "b", "ab", ".", "[ab]", "[^a]", r"\.", "x", "", r"\d", "é"])


def _quantified(pattern: str, quantifier: str) -> str:
    return f"(?:{pattern}){quantifier}"


REGEXES = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map("|".join),
        inner.map(lambda p: f"({p})"),
        st.builds(_quantified, inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "*?", "+?"])),
    ),
    max_leaves=8,
)
# Nested quantifiers over alternatives that overlap: exponential for a backtracking engine.
CATASTROPHIC = st.one_of(
    st.sampled_from(["(a+)+", "(a|a)*", "(a|aa)+", "(a*)*b", "(.*a){12}", "((a+)+)+c"]),
    st.builds(lambda p: f"((?:{p})+)+", REGEXES),
)


def regex_matcher(pattern: str, operator: str = "=~") -> Matcher:
    """`label=~"pattern"`, quoted as the parser wants it."""
    return parse_matcher(str(Matcher(name="label", operator=operator, value=pattern)))  # type: ignore[arg-type]


PLAIN_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


def _matcher_text(name: str, quoted_name: bool, operator: str, value: str, quoted: bool) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (quote(name) if quoted_name else name) + operator + (quote(value) if quoted else value)


# Text shaped like a matcher (often valid, often not), to reach past the first check.
MATCHER_SHAPED = st.builds(
    _matcher_text,
    st.one_of(PLAIN_NAME, ANY_TEXT),
    st.booleans(),
    OPERATORS,
    st.one_of(REGEXES, ANY_TEXT, st.sampled_from([r"(a)\1", "(?=a)", "(?<!a)b", "a{1001}"])),
    st.booleans(),
)


@BUDGETS
def test_parsing_any_text_fails_only_with_invalid_input(budget: str) -> None:
    @given(st.one_of(ANY_TEXT, MATCHER_SHAPED, st.text(max_size=3000)))
    def holds(text: str) -> None:
        try:
            parse_matcher(text)
        except InvalidInput as exc:
            message = str(exc)
        else:
            return
        assert message.startswith(f"matcher {text!r}")

    check(budget, holds)


@BUDGETS
def test_the_string_form_parses_back_to_the_same_matcher(budget: str) -> None:
    @given(st.one_of(PLAIN_NAME, ANY_TEXT), OPERATORS, st.one_of(REGEXES, ANY_TEXT))
    def holds(name: str, operator: str, value: str) -> None:
        text = str(Matcher(name=name, operator=operator, value=value))  # type: ignore[arg-type]
        try:
            parsed = parse_matcher(text)
        except InvalidInput:
            # Only a value RE2 refuses may fail: any name and any `=`/`!=` value round-trip.
            assert operator in ("=~", "!~")
            return
        assert (parsed.name, parsed.operator, parsed.value) == (name, operator, value)
        assert str(parsed) == text

    check(budget, holds)


@BUDGETS
def test_any_parsed_matcher_prints_to_text_that_parses_to_itself(budget: str) -> None:
    @given(MATCHER_SHAPED)
    def holds(text: str) -> None:
        try:
            matcher = parse_matcher(text)
        except InvalidInput:
            return
        again = parse_matcher(str(matcher))
        assert (again.name, again.operator, again.value) == (
            matcher.name,
            matcher.operator,
            matcher.value,
        )

    check(budget, holds)


@BUDGETS
def test_re2_decides_as_pythons_re_on_the_syntax_they_share(budget: str) -> None:
    @given(REGEXES, st.text(alphabet="abx.é1\n", max_size=8))
    def holds(pattern: str, value: str) -> None:
        matcher = regex_matcher(pattern)
        expected = re.fullmatch(pattern, value, flags=re.ASCII) is not None
        assert matcher.matches({"label": value}) is expected

    check(budget, holds)


@BUDGETS
def test_matching_takes_bounded_time_whatever_the_pattern_and_value(budget: str) -> None:
    # A backtracking engine needs about 2**len(value) steps here: the deadline fails it.
    @given(
        CATASTROPHIC,
        st.text(alphabet="ab", min_size=30, max_size=3000),
        st.sampled_from(["", "!", "c", "\n"]),
    )
    def holds(pattern: str, run: str, tail: str) -> None:
        for operator in ("=~", "!~"):
            regex_matcher(pattern, operator).matches({"label": run + tail})

    check(budget, holds)


@BUDGETS
def test_matching_any_labels_never_raises(budget: str) -> None:
    @given(
        MATCHER_SHAPED,
        st.dictionaries(st.one_of(PLAIN_NAME, ANY_TEXT), ANY_TEXT, max_size=4),
    )
    def holds(text: str, labels: dict[str, str]) -> None:
        try:
            matcher = parse_matcher(text)
        except InvalidInput:
            return
        assert isinstance(matcher.matches(labels), bool)

    check(budget, holds)
