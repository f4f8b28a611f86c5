"""CEL for every boolean in a definition (`filter`, `when`, `condition`, `until`).

Backed by `common-expression-language` (Rust cel crate bindings): a compiled program is
reused for every evaluation, and it is an order of magnitude faster than the pure-Python
implementation on the engine's hot path (matching every alert against every workflow).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.templating import CONTEXT_NAMES

_MACRO_BINDING = re.compile(r"\.(?:all|exists_one|exists|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
# Far longer than any condition a workflow holds; past 65,535 characters the bindings'
# parser panics (a Rust panic, not an exception) while it formats an error message.
MAX_EXPRESSION_CHARS = 4096
# What the cel bindings raise while evaluating (no-such-overload, division by zero, index).
_EVALUATION_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError, LookupError)


class ExpressionError(PermanentError):
    """A CEL expression failed at evaluation time or did not yield a boolean."""


@lru_cache(maxsize=4096)
def compile_expression(source: str, *, allowed: frozenset[str] = CONTEXT_NAMES) -> Any:
    """Compile `source` or raise InvalidInput with the parser's message."""
    if len(source) > MAX_EXPRESSION_CHARS:
        msg = (
            f"CEL {source[:40]!r}… is {len(source)} characters long;"
            f" the limit is {MAX_EXPRESSION_CHARS}"
        )
        raise InvalidInput(msg)
    try:
        program = cel.compile(source)
    except ValueError as exc:
        # The parser adds a caret diagram on further lines; its first line says it all.
        reason = " ".join(str(exc).split("\n|", 1)[0].split())
        msg = f"CEL {source!r} does not compile: {reason}"
        raise InvalidInput(msg) from exc
    # Comprehension variables (`x` in `list.exists(x, …)`) are reported as variables too:
    # a name the expression binds itself is not a context name.
    bound = {found[1] for found in _MACRO_BINDING.finditer(source)}
    unknown = set(program.variables()) - allowed - bound
    if unknown:
        names = ", ".join(sorted(unknown))
        known = ", ".join(sorted(allowed))
        msg = f"CEL {source!r} uses unknown name(s) {names}; available: {known}"
        raise InvalidInput(msg)
    return program


@lru_cache(maxsize=4096)
def _roots(source: str) -> frozenset[str]:
    return frozenset(compile_expression(source).variables())


def evaluate_bool(source: str, context: Mapping[str, Any]) -> bool:
    """Evaluate `source` as a boolean; raise ExpressionError with the reason."""
    program = compile_expression(source)
    # Converting a variable to CEL costs in proportion to its size: pass only the roots
    # the expression reads (a `when: 'true'` then costs nothing).
    roots = _roots(source)
    try:
        value = program.execute({name: context[name] for name in roots if name in context})
    except KeyError as exc:
        msg = f"CEL {source!r}: no such key {exc}; guard optional fields with has()"
        raise ExpressionError(msg) from exc
    except _EVALUATION_ERRORS as exc:
        msg = f"CEL {source!r} failed: {type(exc).__name__}: {exc}"
        raise ExpressionError(msg) from exc
    if not isinstance(value, bool):
        msg = f"CEL {source!r} must yield a boolean, got {type(value).__name__} {value!r}"
        raise ExpressionError(msg)
    return value


class Scope:
    """Variables for many evaluations, each converted to CEL once, not once per expression.

    Converting a value to CEL costs in proportion to its size, so a webhook's whole `body`
    is converted when the scope is built; `bind` replaces one variable (an `item`) and
    converts only that.
    """

    __slots__ = ("_context",)

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._context = cel.Context(dict(variables))

    def bind(self, name: str, value: Any) -> None:
        self._context.add_variable(name, value)

    def evaluate(self, source: str, *, allowed: frozenset[str]) -> Any:
        """The value of `source` (compiled with the names `allowed`); raise ExpressionError
        with the reason when evaluation fails."""
        program = compile_expression(source, allowed=allowed)
        try:
            return program.execute(self._context)
        except KeyError as exc:
            msg = f"no such key {exc}; guard optional fields with has()"
            raise ExpressionError(msg) from exc
        except _EVALUATION_ERRORS as exc:
            msg = f"{type(exc).__name__}: {exc}"
            raise ExpressionError(msg) from exc
