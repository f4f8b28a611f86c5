"""Alertmanager-style label matchers: `name="value"`, `!=`, `=~`, `!~`.

Values may be double-quoted (with `\\"`, `\\\\` and `\\n` escapes) or bare; a missing label
matches as the empty string, exactly as Alertmanager does. Regular expressions are RE2's
syntax, compiled by RE2 (`google-re2`), the engine behind Go's `regexp` that Alertmanager
uses: matching takes time linear in the value, whatever the pattern, so a user's regex
cannot stall a service. They are anchored at both ends (Alertmanager compiles
`^(?:re)$`). Patterns RE2 refuses (backreferences, lookaround), patterns longer than
`MAX_PATTERN_BYTES` and patterns whose RE2 program is larger than `MAX_PROGRAM_SIZE` are
an InvalidInput naming the matcher.

Used by workflow triggers (`vigil.engine.domain.matching`, checked by
`vigil.common.validation`) and by the alert listing (`vigil.common.scanning`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

from vigil.common.errors import InvalidInput

Operator = Literal["=", "!=", "=~", "!~"]

# A regex longer than this (in UTF-8 bytes) is refused: real label patterns are far shorter.
MAX_PATTERN_BYTES = 1024
# RE2's own measure of a compiled regex. Matching costs at most about (value length *
# program size) steps, so this bounds the cost per byte; `.{500}` is about 4,000.
MAX_PROGRAM_SIZE = 5000

# The parser's own patterns run on user input too, so each is linear: no nested or
# adjacent ambiguous repetition.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER = re.compile(
    r'(?P<name>[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*)'
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is our InvalidInput, not a line on stderr
    return options


_RE2_OPTIONS = _options()


@dataclass(frozen=True, slots=True)
class Regex:
    """A user's regular expression compiled by RE2, matched against whole values only."""

    source: str
    _compiled: Any = field(repr=False, compare=False)

    @property
    def program_size(self) -> int:
        return int(self._compiled.programsize)

    def fullmatch(self, value: str) -> bool:
        # Bytes, so that a value RE2 cannot take as UTF-8 (a lone surrogate) is still
        # matched (it matches no `.`) instead of raising.
        encoded = value.encode("utf-8", "surrogatepass")
        return self._compiled.fullmatch(encoded) is not None


def compile_regex(pattern: str, *, where: str) -> Regex:
    """Compile with RE2; InvalidInput starting with `where` says what is wrong."""
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"{where}: regular expression is not valid UTF-8 ({exc.reason})"
        raise InvalidInput(msg) from exc
    if len(encoded) > MAX_PATTERN_BYTES:
        msg = (
            f"{where}: regular expression is {len(encoded)} bytes long;"
            f" the limit is {MAX_PATTERN_BYTES}"
        )
        raise InvalidInput(msg)
    try:
        compiled = re2.compile(encoded, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        msg = (
            f"{where}: invalid regular expression: {reason}"
            " (RE2 syntax: no backreferences or lookaround)"
        )
        raise InvalidInput(msg) from exc
    if compiled.programsize > MAX_PROGRAM_SIZE:
        msg = (
            f"{where}: regular expression is too complex (RE2 program of"
            f" {compiled.programsize} instructions; the limit is {MAX_PROGRAM_SIZE}):"
            " use smaller repetition counts"
        )
        raise InvalidInput(msg)
    return Regex(pattern, compiled)


@dataclass(frozen=True, slots=True, kw_only=True)
class Matcher:
    name: str
    operator: Operator
    value: str
    pattern: Regex | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        match self.operator:
            case "=":
                return actual == self.value
            case "!=":
                return actual != self.value
            case "=~":
                assert self.pattern is not None
                return self.pattern.fullmatch(actual)
            case "!~":
                assert self.pattern is not None
                return not self.pattern.fullmatch(actual)

    def cost(self, labels: Mapping[str, str]) -> int:
        """An upper bound of the work `matches` does on `labels`, in RE2 steps."""
        size = len(labels.get(self.name, "")) + 1
        return size * self.pattern.program_size if self.pattern is not None else size

    def __str__(self) -> str:
        name = self.name if _PLAIN_NAME.fullmatch(self.name) else f'"{_escaped(self.name)}"'
        return f'{name}{self.operator}"{_escaped(self.value)}"'


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unquote(text: str, what: str) -> str:
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        if '"' in text:
            msg = f"{what} {text!r} has a stray double quote"
            raise InvalidInput(msg)
        return text
    out: list[str] = []
    body = iter(text[1:-1])
    for char in body:
        if char == '"':
            msg = f"{what} {text!r} has an unescaped double quote inside"
            raise InvalidInput(msg)
        if char == "\\":
            escaped = next(body, None)
            if escaped is None or escaped not in _ESCAPES:
                msg = f'{what} {text!r} has an invalid escape; use \\", \\\\ or \\n'
                raise InvalidInput(msg)
            out.append(_ESCAPES[escaped])
        else:
            out.append(char)
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raise InvalidInput naming the matcher and what is wrong."""
    found = _MATCHER.fullmatch(text.strip())
    if found is None:
        msg = f'matcher {text!r} is not of the form name="value" (operators: = != =~ !~)'
        raise InvalidInput(msg)
    name = _unquote(found["name"], f"matcher {text!r}: label name")
    operator: Operator = found["op"]  # type: ignore[assignment]
    value = _unquote(found["value"], f"matcher {text!r}: value")
    pattern = None
    if operator in ("=~", "!~"):
        pattern = compile_regex(value, where=f"matcher {text!r}")
    return Matcher(name=name, operator=operator, value=value, pattern=pattern)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
