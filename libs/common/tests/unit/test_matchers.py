"""Alertmanager-style label matchers: parsing, quoting, anchoring and error messages."""

from __future__ import annotations

import pytest

from vigil.common.errors import InvalidInput
from vigil.common.matchers import matches_all, parse_matcher

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
