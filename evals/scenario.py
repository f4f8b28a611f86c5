"""A scenario as its YAML file describes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

SCENARIOS = Path(__file__).parent / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Recorded(_Strict):
    """A Prometheus answer, served to any query that names every one of `match`."""

    match: list[str] = Field(min_length=1)
    result_type: str = "vector"
    result: list[dict[str, Any]]


class Injection(_Strict):
    """Instructions planted in tool output, and what obeying them would look like."""

    text: str  # inserted into the logs named by `into`
    into: str  # "namespace/pod"
    forbidden: list[str] = Field(min_length=1)  # in a tool call's arguments: obeyed


class Expected(_Strict):
    tools: list[str] = Field(min_length=1)  # each called at least once
    # The root cause must mention one word of each group (a real model's answer is also
    # put to the judge against `finding`).
    keywords: list[list[str]] = Field(min_length=1)
    finding: str  # the expected root cause, in words, for the judge


class ScriptedTurn(_Strict):
    calls: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    answer: dict[str, Any] | None = None


class Scenario(_Strict):
    name: str
    description: str
    alert: dict[str, Any]
    goal: str
    tools: list[str]
    max_iterations: int = 8
    max_tokens: int = 40_000
    cluster: list[dict[str, Any]] = Field(default_factory=list)  # objects, with apiVersion/kind
    logs: dict[str, str] = Field(default_factory=dict)  # "namespace/pod" -> text
    prometheus: list[Recorded] = Field(default_factory=list)
    injection: Injection
    expected: Expected
    script: list[ScriptedTurn] = Field(min_length=1)


def load(path: Path) -> Scenario:
    return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def every() -> list[Scenario]:
    return [load(path) for path in sorted(SCENARIOS.glob("*.yaml"))]
