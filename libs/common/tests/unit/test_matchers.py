"""Alertmanager-style label matchers: parsing, quoting, anchoring and error messages."""

from __future__ import annotations

import pytest

from vigil.common.errors import InvalidInput
from vigil.common.matchers import MAX_PATTERN_BYTES, matches_all, parse_matcher

LABELS = {"alertname": "KubePodCrashLooping", "severity": "critical", "namespace": "shop"}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', LABELS, True),
        ('severity="warning"', LABELS, False),
        ('severity!="warning"', LABELS, True),
        ('severity!="critical"', LABELS, False),
        ('severity=~"critical|warning"', LABELS, True),
        ('severity=~"info|warning"', LABELS, False),
        ('severity!~"info|warning"', LABELS, True),
        ('severity!~"crit.*"', LABELS, False),
    ],
)
def test_each_operator_decides_as_alertmanager_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_parse_exposes_name_operator_and_unquoted_value() -> None:
    matcher = parse_matcher('alertname=~"Kube.*"')

    assert (matcher.name, matcher.operator, matcher.value) == ("alertname", "=~", "Kube.*")


def test_whitespace_around_the_operator_is_ignored() -> None:
    matcher = parse_matcher('  severity  !=  "info"  ')

    assert (matcher.name, matcher.operator, matcher.value) == ("severity", "!=", "info")


def test_bare_value_is_accepted_without_quotes() -> None:
    matcher = parse_matcher("severity=critical")

    assert matcher.value == "critical"
    assert matcher.matches(LABELS)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'msg="say \"hi\""', 'say "hi"'),
        (r'path="C:\\tmp"', "C:\\tmp"),
        (r'text="line1\nline2"', "line1\nline2"),
        ('spaced="  padded  "', "  padded  "),
        ('empty=""', ""),
    ],
)
def test_double_quoted_value_is_unescaped(text: str, value: str) -> None:
    assert parse_matcher(text).value == value


def test_quoted_label_name_is_unquoted() -> None:
    matcher = parse_matcher('"app.kubernetes.io/name"="api"')

    assert matcher.name == "app.kubernetes.io/name"
    assert matcher.matches({"app.kubernetes.io/name": "api"})


def test_string_form_round_trips_through_the_parser() -> None:
    original = parse_matcher(r'msg!="a\"b\\c\nd"')

    again = parse_matcher(str(original))

    assert (again.name, again.operator, again.value) == (
        original.name,
        original.operator,
        original.value,
    )


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('pod=~"api"', "api-7f9c", False),  # a prefix is not a match: anchored at the end
        ('pod=~"7f9c"', "api-7f9c", False),  # a suffix is not a match: anchored at the start
        ('pod=~"api-.*"', "api-7f9c", True),
        ('pod!~"api"', "api-7f9c", True),
        ('severity=~"critical|warning"', "critical-ish", False),  # anchoring spans alternation
    ],
)
def test_regex_must_match_the_whole_value(text: str, value: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"pod": value, "severity": value}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('team=""', True),
        ('team!=""', False),
        ('team=~".*"', True),
        ('team=~".+"', False),
        ('team!~".+"', True),
        ('team="ops"', False),
        ('team!="ops"', True),
    ],
)
def test_missing_label_matches_as_the_empty_string(text: str, expected: bool) -> None:
    assert parse_matcher(text).matches(LABELS) is expected


def test_matches_all_requires_every_matcher_to_hold() -> None:
    matchers = [parse_matcher('alertname="KubePodCrashLooping"'), parse_matcher('severity="info"')]

    assert not matches_all(matchers, LABELS)
    assert matches_all(matchers[:1], LABELS)
    assert matches_all([], LABELS)


@pytest.mark.parametrize("text", ['severity~="critical"', 'severity<>"critical"', "severity"])
def test_unknown_operator_is_rejected_listing_the_operators(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"operators: = != =~ !~"):
        parse_matcher(text)


@pytest.mark.parametrize("text", ['="critical"', '1abc="x"', 'bad-name="x"'])
def test_invalid_label_name_is_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not of the form"):
        parse_matcher(text)


@pytest.mark.parametrize("text", ['severity="critical', 'severity=critical"'])
def test_unbalanced_double_quote_is_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="double quote"):
        parse_matcher(text)


def test_unescaped_quote_inside_a_quoted_value_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="unescaped double quote"):
        parse_matcher('msg="say "hi""')


@pytest.mark.parametrize("text", [r'msg="tab\there"', 'msg="ends with backslash\\"'])
def test_unknown_or_dangling_escape_is_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid escape"):
        parse_matcher(text)


@pytest.mark.parametrize("operator", ["=~", "!~"])
def test_invalid_regex_is_rejected_at_parse_time(operator: str) -> None:
    with pytest.raises(InvalidInput, match="invalid regular expression"):
        parse_matcher(f'pod{operator}"api-[0-9"')


def test_regex_characters_are_literal_for_equality_operators() -> None:
    matcher = parse_matcher('pod="api-[0-9"')

    assert matcher.matches({"pod": "api-[0-9"})
    assert not matcher.matches({"pod": "api-7"})


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\\1", "invalid escape sequence"),  # a backreference
        ("(?=a)a", "invalid perl operator"),  # lookahead
        ("(?<!a)b", "invalid perl operator"),  # lookbehind
        ("a{1001}", "invalid repetition size"),
    ],
    ids=["backreference", "lookahead", "lookbehind", "repetition"],
)
def test_a_pattern_re2_refuses_is_invalid_input_naming_the_matcher(
    pattern: str, reason: str
) -> None:
    text = f'pod=~"{pattern}"'

    with pytest.raises(InvalidInput) as refused:
        parse_matcher(text)

    assert str(refused.value).startswith(f"matcher {text!r}: invalid regular expression")
    assert reason in str(refused.value)
    assert "RE2 syntax" in str(refused.value)


def test_a_pattern_over_the_length_limit_is_refused_naming_the_matcher() -> None:
    longest = "a" * MAX_PATTERN_BYTES
    assert parse_matcher(f'pod=~"{longest}"').matches({"pod": longest})

    with pytest.raises(InvalidInput, match=r"is 1025 bytes long; the limit is 1024") as refused:
        parse_matcher(f'pod!~"{longest}a"')
    assert str(refused.value).startswith("matcher 'pod!~\"aaaa")


def test_a_pattern_compiling_to_a_huge_program_is_refused_as_too_complex() -> None:
    with pytest.raises(InvalidInput, match=r"too complex \(RE2 program of \d+ instructions"):
        parse_matcher('msg=~".{1000}"')  # about 8,000 instructions: `.` is a UTF-8 automaton
    assert parse_matcher('msg=~".{500}"').matches({"msg": "x" * 500})


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pattern", ["(a+)+", "(a|aa)+", "(.*a){20}", "((a*)*)*b"])
def test_a_backtracking_bomb_over_a_long_label_answers_at_once(pattern: str) -> None:
    # A backtracking engine takes about 2**40 steps here (Python's `re`: hours).
    matcher = parse_matcher(f'x=~"{pattern}"')

    assert not matcher.matches({"x": "a" * 40 + "!"})
    assert matcher.matches({"x": "a" * 40 + "b"}) is (pattern == "((a*)*)*b")


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        (r'n=~"\\d+"', "١٢٣", False),  # Go's \d is ASCII: Arabic-Indic digits are not digits
        (r'n=~"\\d+"', "123", True),
        (r'n=~"\\w+"', "café", False),  # so is \w
        ('n=~"caf."', "café", True),  # `.` is one character, not one byte
        ('n=~"abc"', "abc\n", False),  # the end is the end, not before a final newline
        ('n=~"(?i)ÉTÉ"', "été", True),
        ('n=~"(?s)a.b"', "a\nb", True),
    ],
)
def test_regexes_decide_as_gos_regexp_does(text: str, value: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"n": value}) is expected


def test_a_value_with_a_lone_surrogate_is_matched_without_error() -> None:
    matcher = parse_matcher('x=~"a.*"')

    assert matcher.matches({"x": "a\ud800"})  # as in Go, `.` takes a byte that is no UTF-8
    assert parse_matcher('x!~"b.*"').matches({"x": "\ud800"})


def test_a_regex_that_is_not_unicode_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        parse_matcher('x=~"\ud800"')


def test_a_quoted_label_name_prints_quoted_so_it_parses_back() -> None:
    matcher = parse_matcher(r'"app.kubernetes.io/na\"me"=~"api|web"')

    assert str(matcher) == r'"app.kubernetes.io/na\"me"=~"api|web"'
    assert parse_matcher(str(matcher)).name == 'app.kubernetes.io/na"me'


@pytest.mark.timeout(10)
def test_parsing_a_long_hostile_matcher_takes_linear_time() -> None:
    # Lazy `.*?` before `\s*$` was quadratic in the spaces of a value.
    with pytest.raises(InvalidInput, match="not of the form"):
        parse_matcher("a=" + " x" * 200_000 + "\n" + " " * 200_000 + "y")
    assert parse_matcher("a=" + " x" * 200_000).value.endswith("x x")
