"""What the Kubernetes API server would say of a document, checked offline against a CRD.

The CRD's `openAPIV3Schema` is checked with `jsonschema` after what the API server does
first: nulls of non-`nullable` fields are pruned, and unknown fields are refused (kubectl's
default strict field validation). Then every `x-kubernetes-validations` rule is evaluated
with the project's CEL library, `self` bound to the value the rule sits on. A real API
server also estimates each rule's cost, which is not emulated here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import cel
import jsonschema
import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"

type Schema = dict[str, Any]


@cache
def crd_schema(kind: str) -> Schema:
    """The `openAPIV3Schema` of the committed CRD of `kind`."""
    for path in CRDS.glob("*.vigil.dev.yaml"):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        if crd["spec"]["names"]["kind"] == kind:
            schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    msg = f"no CRD for kind {kind} in {CRDS}"
    raise LookupError(msg)


def refusals(document: dict[str, Any]) -> list[str]:
    """Why the API server would refuse `document`; empty if it would admit it."""
    schema = crd_schema(str(document.get("kind")))
    value = _pruned(document)
    validator = jsonschema.Draft202012Validator(_strict(schema))
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or 'document'}: {error.message}"
        for error in validator.iter_errors(value)
    ]
    if problems:
        return problems
    return _rules(schema, value, "")


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _strict(schema: Schema) -> Schema:
    """The schema with unknown fields refused wherever fields are listed."""
    strict = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if "properties" in schema:
        strict["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        strict.setdefault("additionalProperties", False)
    if isinstance(schema.get("additionalProperties"), dict):
        strict["additionalProperties"] = _strict(schema["additionalProperties"])
    if "items" in schema:
        strict["items"] = _strict(schema["items"])
    return strict


def _rules(schema: Schema, value: Any, path: str) -> list[str]:
    problems = [
        f"{path or 'document'}: {rule['message']}"
        for rule in schema.get("x-kubernetes-validations", [])
        if cel.compile(rule["rule"]).execute({"self": value}) is not True
    ]
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += _rules(sub, value[name], f"{path}.{name}".lstrip("."))
        if isinstance(schema.get("additionalProperties"), dict):
            for name, item in value.items():
                problems += _rules(schema["additionalProperties"], item, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _rules(schema["items"], item, f"{path}[{index}]")
    return problems


def walk(schema: Schema) -> list[Schema]:
    """Every schema node under `schema`, itself first."""
    nodes = [schema]
    for sub in schema.get("properties", {}).values():
        nodes += walk(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            nodes += walk(schema[key])
    return nodes
