"""What the resource models of `vigil.common.resources` share: the field types with their
checks (DNS labels, durations, step names) and their JSON schema for the CRDs, CEL rules for
the API server, the base model and Secret references."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
)

from vigil.common.durations import parse_duration

API_VERSION = "vigil.dev/v1alpha1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The same rules for the API server (OpenAPI patterns are ECMA-262 regular expressions).
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+\s*$"
MAX_STEPS = 64
YAML11_ON = "true"  # the key `on` as YAML 1.1 parsers (kubectl's) read it


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        msg = f"{value!r} is not a DNS label (at most 63 lower-case letters, digits and '-')"
        raise ValueError(msg)
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _step_name(value: str) -> str:
    if not _STEP_NAME.match(value):
        msg = (
            f"step name {value!r} must be an identifier (letters, digits, '_'), "
            "so that `steps.<name>` works in templates and CEL"
        )
        raise ValueError(msg)
    return value


DnsLabel = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL.pattern, "maxLength": 63}),
]
Duration = Annotated[
    str, AfterValidator(_duration), WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
]
StepName = Annotated[
    str,
    AfterValidator(_step_name),
    WithJsonSchema({"type": "string", "pattern": _STEP_NAME.pattern, "maxLength": 63}),
]


def cel_rules(*rules: tuple[str, str]) -> dict[str, JsonValue]:
    """CEL rules the API server checks (`x-kubernetes-validations`): (rule, message)."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Metadata(Spec):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    name: DnsLabel
    namespace: DnsLabel = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    generation: int = 1


class SecretKeyRef(Spec):
    name: DnsLabel
    key: str = Field(min_length=1)


class BasicAuthSecretRef(Spec):
    name: DnsLabel
    username_key: str = Field(alias="usernameKey", min_length=1)
    password_key: str = Field(alias="passwordKey", min_length=1)
