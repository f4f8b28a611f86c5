"""Jinja2 templates for every string in a definition: sandboxed, StrictUndefined.

The sandbox forbids attribute access to Python internals and bounds the sizes a template
may build from a value (label values come from whoever can send a webhook); StrictUndefined
turns a typo (`alert.lables.pod`) into an error instead of an empty string in a command
line.
Templates are compiled once per source text and cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vigil.common.errors import InvalidInput, PermanentError

CONTEXT_NAMES = frozenset({"alert", "group", "steps", "execution", "workflow", "body"})


class TemplateError(PermanentError):
    """A template failed to render: unknown variable, sandbox violation, bad filter."""


# Widths and counts a template may hand to what allocates by them (`center`, `indent`,
# `"x".ljust(n)`, `"x" * n` …): a label value turned into one (`center(alert.labels.n |
# int)` with n = "2e10") would otherwise build a string of gigabytes.
MAX_SIZE_ARGUMENT = 100_000
# Exponents past this build integers of megabytes (`10 ** 100000000` takes seconds).
MAX_EXPONENT = 10_000
# A printf width or precision of six digits or more (`%999999999d`), as in a label value
# used as a format string.
_WIDE_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:[0-9]{6,}|[0-9]*\.[0-9]{6,})")
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _oversized(values: Iterable[Any]) -> int | None:
    """The first integer among `values` too large to size anything by."""
    for value in values:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and abs(value) > MAX_SIZE_ARGUMENT
        ):
            return value
    return None


def _huge_power(base: Any, exponent: Any) -> bool:
    return (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and abs(exponent) > MAX_EXPONENT
    )


def _sized(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(apply)  # keeps Jinja's pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        too_large = _oversized([*args[1:], *kwargs.values()])
        if too_large is not None:
            msg = f"filter {name} refuses a size of {too_large} (at most {MAX_SIZE_ARGUMENT})"
            raise SecurityError(msg)
        return apply(*args, **kwargs)

    return guarded


def _printf(apply: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(apply)
    def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _WIDE_PRINTF.search(value):
            msg = f"filter format refuses a width over 99999 in {value[:40]!r}"
            raise SecurityError(msg)
        return apply(value, *args, **kwargs)

    return guarded


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with sizes bounded (see MAX_SIZE_ARGUMENT)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _SIZED_FILTERS:
            self.filters[name] = _sized(name, self.filters[name])
        self.filters["format"] = _printf(self.filters["format"])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                repeated = isinstance(sequence, str | list | tuple) and isinstance(count, int)
                if repeated and len(sequence) * count > MAX_SIZE_ARGUMENT:
                    msg = f"repeating a sequence to more than {MAX_SIZE_ARGUMENT} items"
                    raise SecurityError(msg)
        elif operator == "%" and isinstance(left, str) and _WIDE_PRINTF.search(left):
            msg = f"a format width over 99999 in {left[:40]!r}"
            raise SecurityError(msg)
        elif operator == "**" and _huge_power(left, right):
            msg = f"an exponent of {right} (at most {MAX_EXPONENT})"
            raise SecurityError(msg)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if isinstance(getattr(__obj, "__self__", None), str) and (
            getattr(__obj, "__name__", "") in _SIZED_METHODS
        ):
            too_large = _oversized([*args, *kwargs.values()])
            if too_large is not None:
                msg = f"str.{__obj.__name__} refuses a size of {too_large}"
                raise SecurityError(msg)
        return super().call(__context, __obj, *args, **kwargs)


_ENV = _Sandbox(
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
    if "{" not in source and "\r" not in source:
        # No delimiter and no line ending to normalise: Jinja would return it unchanged
        # (`keep_trailing_newline`), at the cost of a new render context per call.
        return source
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
