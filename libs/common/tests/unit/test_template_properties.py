"""Properties of template rendering: whatever the labels an alert brings (NUL bytes,
digits past int's limits, format directives, empty strings), the templates a workflow is
likely to hold render or fail with a TemplateError; any template text compiles or fails
with an InvalidInput, and renders or fails with a TemplateError. Never another exception."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.errors import InvalidInput
from vigil.common.templating import TemplateError, compile_template, render

# Label values as webhooks bring them: any Unicode text (JSON bodies cannot carry lone
# surrogates past ingest), NUL included, often digits or format directives.
VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,6}(\.[0-9]+)?(e[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(
        ["", "%s", "%(x)s", "%d%d", "{}", "{0}", "\x00", "9" * 5000, "1e400", "2e10", "%999999999d"]
    ),
)
LABELS = st.dictionaries(st.sampled_from(["pod", "n", "app.kubernetes.io/name", ""]), VALUES)

# Templates over labels as workflows write them, filters and arithmetic included.
TEMPLATES = [
    "kubectl describe pod {{ alert.labels.pod }}",
    '{{ alert.labels["app.kubernetes.io/name"] | default("none") }}',
    "{{ alert.labels.pod | int }}",
    "{{ alert.labels.n | float | int }}",
    "{{ (alert.labels.pod | int) // (alert.labels.n | int) }}",
    "{{ alert.labels.pod | truncate(10) }}",
    '{{ alert.labels.pod | replace("-", "_") | upper }}',
    "{{ alert.labels.pod | format(1) }}",
    '{{ "%s-%s" | format(alert.labels.pod, alert.labels.n) }}',
    '{{ "%s" % alert.labels.pod }}',
    "{{ alert.labels.pod % 3 }}",
    "{{ alert.labels.pod * 3 }}",
    "{{ alert.labels | tojson }}",
    "{{ alert.labels.pod | urlencode }}",
    "{{ alert.labels.pod | wordwrap(5) | indent(2) }}",
    '{{ alert.labels.pod.split("-")[1] }}',
    "{{ alert.labels.pod | list | first }}",
    "{{ alert.labels.pod | random }}",
    "{{ alert.labels | dictsort | map('last') | join(',') }}",
    "{{ alert.labels | xmlattr }}",
    "{{ alert.labels.pod | int(base=16) | filesizeformat }}",
    "{{ alert.labels.pod | sum }}",
    "{{ alert.labels.n | round(alert.labels.pod | int) }}",
    "{% for k, v in alert.labels.items() %}{{ k }}={{ v }} {% endfor %}",
    '{{ alert.labels.get("pod", "") | center(alert.labels.n | int) | length }}',
]


def context(labels: dict[str, str]) -> dict[str, Any]:
    return {"alert": {"status": "firing", "labels": labels, "annotations": {}}}


@BUDGETS
def test_any_labels_render_or_fail_with_a_template_error(budget: str) -> None:
    @given(st.sampled_from(TEMPLATES), LABELS)
    @example("{{ alert.labels.pod | random }}", {"pod": ""})
    @example("{{ alert.labels.pod | truncate(alert.labels.n | int) }}", {"pod": "a", "n": "-1"})
    def holds(template: str, labels: dict[str, str]) -> None:
        try:
            rendered = render(template, context(labels))
        except TemplateError as exc:
            message = str(exc)
        else:
            assert isinstance(rendered, str)
            return
        assert message.startswith(f"template {template!r}")

    check(budget, holds)


# Template text with Jinja's syntax about: delimiters, expressions, deep nesting.
_PIECES = st.sampled_from(
    ["{{", "}}", "{%", "%}", "{#", "#}", "alert.labels.pod", "(", ")", "[", "]", "|", " ",
     "if", "for", "endif", "in", "x", "'", '"', "1", "+", "**", "upper", "~", ",", "."]
)  # fmt: skip
TEMPLATE_TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(_PIECES, max_size=30).map("".join),
    st.builds(lambda d: "{{ " + "(" * d + "1" + ")" * d + " }}", st.integers(1, 5000)),
    st.builds(lambda d: "{% if 1 %}" * d + "{% endif %}" * d, st.integers(1, 2000)),
)


@BUDGETS
def test_any_template_text_compiles_or_is_invalid_input_and_renders_or_fails_cleanly(
    budget: str,
) -> None:
    @given(TEMPLATE_TEXT, LABELS)
    @example("{{ " + "[" * 3000 + "]" * 3000 + " }}", {})
    def holds(source: str, labels: dict[str, str]) -> None:
        try:
            compile_template(source)
        except InvalidInput as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert refusal.startswith("template ")
            return
        try:
            render(source, context(labels))
        except TemplateError as exc:
            failure = str(exc)
        else:
            return
        assert failure.startswith(f"template {source!r}")

    check(budget, holds)


@given(st.text(alphabet=st.sampled_from(["a", " ", "\n", "\r", "%", "#", "}", "-", "é"])))
@example("line\n")
@example("a\r\nb")
def test_text_without_a_brace_renders_as_jinja_renders_it(source: str) -> None:
    """`render` returns such text as it is without asking Jinja: Jinja's result all the same
    (line endings normalised, a trailing newline kept)."""
    assert render(source, {}) == compile_template(source).render({})
