"""Property: a command rendered from an alert's labels never carries a NUL byte to a
process unnoticed. Whatever the labels, the argv and env the templates render are either
clean or refused by `argv_problem` (which both runners check before starting anything),
naming the first argument or variable that holds one."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.templating import TemplateError, render
from vigil.executor.domain.argv import argv_problem

COMMAND = [
    "kubectl",
    "logs",
    "{{ alert.labels.pod }}",
    "--namespace={{ alert.labels.namespace | default('default') }}",
    "--",
    "{{ alert.labels.pod | replace('-', '') | upper }}{{ alert.labels.namespace | trim }}",
]
ENV = {"POD": "{{ alert.labels.pod }}", "{{ alert.labels.namespace | upper }}": "set"}
VALUES = st.text(alphabet=st.sampled_from(["a", "-", " ", "\x00", "é", "\n", "="]), max_size=8)


def context(labels: dict[str, str]) -> dict[str, Any]:
    return {"alert": {"labels": labels}}


@BUDGETS
def test_a_nul_byte_rendered_from_labels_is_always_refused_and_named(budget: str) -> None:
    @given(st.fixed_dictionaries({"pod": VALUES}, optional={"namespace": VALUES}))
    @example({"pod": "api\x00", "namespace": "shop"})
    @example({"pod": "api", "namespace": "\x00"})
    def holds(labels: dict[str, str]) -> None:
        try:
            argv = [render(part, context(labels)) for part in COMMAND]
            env = {render(k, context(labels)): render(v, context(labels)) for k, v in ENV.items()}
        except TemplateError:
            return  # the step fails before any process, naming the template
        problem = argv_problem(argv, env)

        tainted = [position for position, argument in enumerate(argv) if "\x00" in argument]
        if tainted:
            assert problem is not None
            assert problem.startswith(f"argument {tainted[0]} of the command contains a NUL")
        elif any("\x00" in k or "\x00" in v or "=" in k or not k for k, v in env.items()):
            assert problem is not None
            assert problem.startswith("environment variable ")
        else:
            assert problem is None

    check(budget, holds)
