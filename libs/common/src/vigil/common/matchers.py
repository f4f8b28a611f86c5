"""Alertmanager-style label matchers: `name="value"`, `!=`, `=~`, `!~`.

Values may be double-quoted (with `\\"`, `\\\\` and `\\n` escapes) or bare; regular
expressions are anchored at both ends, and a missing label matches as the empty string,
exactly as Alertmanager does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vigil.common.errors import InvalidInput

Operator = Literal["=", "!=", "=~", "!~"]

_NAME = r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*"'
_MATCHER = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Matcher:
    name: str
    operator: Operator
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        match self.operator:
            case "=":
                return actual == self.value
            case "!=":
                return actual != self.value
            case "=~":
                assert self.pattern is not None
                return self.pattern.fullmatch(actual) is not None
            case "!~":
                assert self.pattern is not None
                return self.pattern.fullmatch(actual) is None

    def __str__(self) -> str:
        quoted = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{quoted}"'


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
    """Parse one matcher; raise InvalidInput naming what is wrong."""
    found = _MATCHER.match(text)
    if found is None:
        msg = f'matcher {text!r} is not of the form name="value" (operators: = != =~ !~)'
        raise InvalidInput(msg)
    name = _unquote(found["name"], "label name")
    operator: Operator = found["op"]  # type: ignore[assignment]
    value = _unquote(found["value"], "matcher value")
    pattern = None
    if operator in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            msg = f"matcher {text!r}: invalid regular expression: {exc}"
            raise InvalidInput(msg) from exc
    return Matcher(name=name, operator=operator, value=value, pattern=pattern)


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
