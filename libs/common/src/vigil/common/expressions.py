"""CEL for every boolean in a definition (`filter`, `when`, `condition`, `until`).

Backed by `common-expression-language` (Rust cel crate bindings): a compiled program is
reused for every evaluation, and it is an order of magnitude faster than the pure-Python
implementation on the engine's hot path (matching every alert against every workflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

from vigil.common.errors import InvalidInput, PermanentError
from vigil.common.templating import CONTEXT_NAMES


class ExpressionError(PermanentError):
    """A CEL expression failed at evaluation time or did not yield a boolean."""


@lru_cache(maxsize=4096)
def compile_expression(source: str, *, allowed: frozenset[str] = CONTEXT_NAMES) -> Any:
    """Compile `source` or raise InvalidInput with the parser's message."""
    try:
        program = cel.compile(source)
    except ValueError as exc:
        msg = f"CEL {source!r} does not compile: {exc}"
        raise InvalidInput(msg) from exc
    unknown = set(program.variables()) - allowed
    # Comprehension variables (`x` in `list.exists(x, …)`) are reported as variables too,
    # so only flag names that cannot be a macro binding: the roots we know are allowed.
    if unknown and not _uses_macros(source):
        names = ", ".join(sorted(unknown))
        known = ", ".join(sorted(allowed))
        msg = f"CEL {source!r} uses unknown name(s) {names}; available: {known}"
        raise InvalidInput(msg)
    return program


def _uses_macros(source: str) -> bool:
    return any(f".{m}(" in source for m in ("all", "exists", "exists_one", "map", "filter"))


def evaluate_bool(source: str, context: Mapping[str, Any]) -> bool:
    """Evaluate `source` as a boolean; raise ExpressionError with the reason."""
    program = compile_expression(source)
    try:
        value = program.execute(dict(context))
    except KeyError as exc:
        msg = f"CEL {source!r}: no such key {exc}; guard optional fields with has()"
        raise ExpressionError(msg) from exc
    except (TypeError, ValueError, RuntimeError) as exc:
        msg = f"CEL {source!r} failed: {exc}"
        raise ExpressionError(msg) from exc
    if not isinstance(value, bool):
        msg = f"CEL {source!r} must yield a boolean, got {type(value).__name__} {value!r}"
        raise ExpressionError(msg)
    return value
