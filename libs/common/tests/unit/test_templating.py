"""Jinja2 templates: rendering, StrictUndefined, the sandbox, and compile-time checks."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.templating import TemplateError, compile_template, render

CONTEXT: dict[str, Any] = {
    "alert": {
        "status": "firing",
        "labels": {"alertname": "KubePodCrashLooping", "pod": "api-7f9c", "namespace": "shop"},
        "annotations": {"summary": "Pod is crash-looping"},
    },
    "steps": {"describe": {"state": "succeeded", "output": {"stdout": "OOMKilled"}}},
    "execution": {"id": "ex-1", "error": None},
    "workflow": {"name": "pod-crashloop", "namespace": "shop", "labels": {}},
}


def test_renders_nested_values_from_the_context() -> None:
    rendered = render("{{ alert.labels.pod }} in {{ alert.labels.namespace }}", CONTEXT)

    assert rendered == "api-7f9c in shop"


def test_renders_expressions_and_conditionals() -> None:
    source = "{{ 'OOM' if 'OOMKilled' in steps.describe.output.stdout else 'other' }}"

    assert render(source, CONTEXT) == "OOM"


def test_plain_text_renders_unchanged_with_trailing_newline_kept() -> None:
    assert render("kubectl get pods\n", CONTEXT) == "kubectl get pods\n"


def test_output_is_not_html_escaped() -> None:
    context = {"alert": {"labels": {"q": "<a & b>"}}}

    assert render("{{ alert.labels.q }}", context) == "<a & b>"


def test_misspelt_attribute_raises_template_error_instead_of_rendering_empty() -> None:
    with pytest.raises(TemplateError, match="lables"):
        render("kubectl describe pod {{ alert.lables.pod }}", CONTEXT)


def test_missing_label_raises_template_error() -> None:
    with pytest.raises(TemplateError, match="team"):
        render("{{ alert.labels.team }}", CONTEXT)


def test_template_error_is_permanent_so_it_is_not_retried() -> None:
    with pytest.raises(PermanentError):
        render("{{ alert.labels.team }}", CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        "{{ alert.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ alert.labels.pod.__class__ }}",
        "{{ ().__class__.__base__ }}",
    ],
)
def test_sandbox_refuses_access_to_python_internals(source: str) -> None:
    with pytest.raises(TemplateError, match="sandbox"):
        render(source, CONTEXT)


def test_sandbox_refuses_mutating_the_context() -> None:
    labels = {"pod": "api-7f9c"}

    with pytest.raises(TemplateError, match="sandbox"):
        render("{{ alert.labels.pop('pod') }}", {"alert": {"labels": labels}})
    assert labels == {"pod": "api-7f9c"}


def test_runtime_failure_is_reported_as_template_error() -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        render("{{ 1 / 0 }}", CONTEXT)


def test_default_filter_replaces_a_missing_value() -> None:
    assert render("{{ alert.labels.team | default('platform') }}", CONTEXT) == "platform"


def test_default_filter_keeps_a_present_value() -> None:
    assert render("{{ alert.labels.pod | default('none') }}", CONTEXT) == "api-7f9c"


def test_default_filter_can_nest_over_missing_values() -> None:
    source = "{{ alert.annotations.description | default(alert.labels.team | default('-')) }}"

    assert render(source, CONTEXT) == "-"


@pytest.mark.parametrize("source", ["{{ alert.labels.pod ", "{% if alert %}open", "{{ }}"])
def test_compile_rejects_syntax_errors_with_invalid_input(source: str) -> None:
    with pytest.raises(InvalidInput, match="template syntax error at line 1"):
        compile_template(source)


def test_compile_rejects_unknown_root_names_listing_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"unknown name\(s\) alrt, pod; available: alert"):
        compile_template("{{ alrt.labels.x }} {{ pod }}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ alert.labels.pod }}",
        "{{ group.key }}{{ steps }}{{ execution.id }}{{ workflow.name }}{{ body.id }}",
        "{% set p = alert.labels.pod %}{{ p }}",
        "{% for name in alert.labels %}{{ name }}{% endfor %}",
    ],
)
def test_compile_accepts_the_context_names_and_local_variables(source: str) -> None:
    compile_template(source)


def test_compile_honours_a_narrower_set_of_allowed_names() -> None:
    with pytest.raises(InvalidInput, match="unknown name"):
        compile_template("{{ alert.labels.pod }}", allowed=frozenset({"body"}))


def test_render_of_a_template_with_an_unknown_name_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        render("{{ nope }}", CONTEXT)


def test_an_unknown_filter_is_refused_when_the_template_is_compiled() -> None:
    """Found by the CRD corpus: it used to escape as a Jinja error and crash validation."""
    with pytest.raises(InvalidInput, match="No filter named 'shout'"):
        compile_template("{{ alert.labels.x | shout }}")


@pytest.mark.parametrize(
    ("source", "labels", "refusal"),
    [
        ("{{ alert.labels.x | center(alert.labels.n | int) }}", {"x": "", "n": "2e10"}, "center"),
        ("{{ alert.labels.x | indent(alert.labels.n | int) }}", {"x": "a", "n": "1e9"}, "indent"),
        ("{{ alert.labels.x.ljust(alert.labels.n | int) }}", {"x": "", "n": "1e9"}, "ljust"),
        ('{{ "ab" * (alert.labels.n | int) }}', {"n": "1e9"}, "repeating a sequence"),
        ("{{ 10 ** (alert.labels.n | int) }}", {"n": "100000000"}, "an exponent of"),
        ("{{ alert.labels.x | format(1) }}", {"x": "%999999999d"}, "width over 99999"),
        ("{{ alert.labels.x % 1 }}", {"x": "%.9999999f"}, "width over 99999"),
    ],
    ids=["center", "indent", "ljust", "repeat", "power", "format-filter", "printf"],
)
def test_a_size_taken_from_a_label_is_bounded_by_the_sandbox(
    source: str, labels: dict[str, str], refusal: str
) -> None:
    # Each would build gigabytes (or take minutes) if the label's number were obeyed.
    with pytest.raises(TemplateError, match="refused by the sandbox") as refused:
        render(source, {"alert": {"labels": labels}})
    assert refusal in str(refused.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "x" | center(5) }}', "  x  "),
        ('{{ "ab" * 3 }}', "ababab"),
        ("{{ 2 ** 10 }}", "1024"),
        ('{{ "%05d" | format(42) }}', "00042"),
        ('{{ "%s-%d" % ("a", 3) }}', "a-3"),
        ('{{ "abcdefghijklmnop" | truncate(5) }}', "ab..."),
    ],
)
def test_ordinary_sizes_render_as_before(source: str, expected: str) -> None:
    assert render(source, {}) == expected


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ " + "(" * 150 + "1" + ")" * 150 + " }}", "nested too deeply"),
        ("{% if 1 %}" * 120 + "{% endif %}" * 120, "nested too deeply"),
    ],
    ids=["brackets", "blocks"],
)
def test_a_template_nested_too_deeply_is_invalid_input(source: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        compile_template(source)


def test_a_filter_asserting_on_a_label_value_is_a_template_error() -> None:
    # `truncate` checks its length with `assert`: an AssertionError escaped before.
    with pytest.raises(TemplateError, match="a filter refused its arguments"):
        render(
            "{{ alert.labels.x | truncate(alert.labels.n | int) }}",
            {"alert": {"labels": {"x": "abc", "n": "-1"}}},
        )
