"""Jinja2 templates for every string in a definition: sandboxed, StrictUndefined.

The sandbox forbids attribute access to Python internals; StrictUndefined turns a typo
(`alert.lables.pod`) into an error instead of an empty string in a command line.
Templates are compiled once per source text and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vigil.common.errors import InvalidInput, PermanentError

CONTEXT_NAMES = frozenset({"alert", "group", "steps", "execution", "workflow", "body"})


class TemplateError(PermanentError):
    """A template failed to render: unknown variable, sandbox violation, bad filter."""


_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@lru_cache(maxsize=4096)
def compile_template(source: str, *, allowed: frozenset[str] = CONTEXT_NAMES) -> jinja2.Template:
    """Compile `source`, or raise InvalidInput naming the syntax error or unknown name."""
    try:
        tree = _ENV.parse(source)
        unknown = meta.find_undeclared_variables(tree) - allowed
        if unknown:
            names = ", ".join(sorted(unknown))
            known = ", ".join(sorted(allowed))
            msg = f"template uses unknown name(s) {names}; available: {known}"
            raise InvalidInput(msg)
        # Compiling finds what parsing does not: an unknown filter or test.
        return _ENV.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:  # TemplateAssertionError is one too
        msg = f"template syntax error at line {exc.lineno}: {exc.message}"
        raise InvalidInput(msg) from exc
    except (RecursionError, SyntaxError) as exc:
        # Jinja's parser recurses per nesting level, and Python refuses the code it
        # generates past 200 nested brackets: either way, the template is too deep.
        msg = "template is nested too deeply (brackets, blocks or expressions)"
        raise InvalidInput(msg) from exc


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render `source` against `context`; raise TemplateError with the reason."""
    template = compile_template(source)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        msg = f"template {source!r}: {exc.message}"
        raise TemplateError(msg) from exc
    except jinja2.exceptions.SecurityError as exc:
        msg = f"template {source!r} was refused by the sandbox: {exc}"
        raise TemplateError(msg) from exc
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        msg = f"template {source!r} failed: {exc}"
        raise TemplateError(msg) from exc
    except AssertionError as exc:
        # Some of Jinja's filters check their arguments with `assert` (`truncate(-1)`).
        msg = f"template {source!r} failed: a filter refused its arguments: {exc}"
        raise TemplateError(msg) from exc
    except RecursionError as exc:
        msg = f"template {source!r} failed: it recursed too deeply"
        raise TemplateError(msg) from exc
