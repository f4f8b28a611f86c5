"""What an agent step answers, as later steps read it: the finding's own fields and the
extra ones a workflow asks for with `outputSchema` (a JSON Schema of type object).

Shared by validation (is the schema usable?) and the executor (does the answer carry the
fields?). jsonschema comes with the `schemas` extra of vigil-common, which the services
that read workflows install; it is imported only when a workflow has an `outputSchema`.
"""

from __future__ import annotations

from typing import Any

# The step output's own keys: an `outputSchema` may not redefine them.
FINDING_FIELDS = (
    "summary",
    "rootCause",
    "evidence",
    "recommendations",
    "confidence",
    "toolCalls",
    "tokens",
    "transcriptId",
)


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Why `schema` cannot describe the extra fields of an answer (empty: it can)."""
    from jsonschema import Draft202012Validator, SchemaError

    if schema.get("type") != "object":
        return ['must be a JSON Schema of "type": "object"']
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return ["must name the fields it adds under `properties`"]
    problems = []
    clashes = [name for name in properties if name in FINDING_FIELDS]
    if clashes:
        problems.append(
            f"redefines the finding's own fields: {', '.join(clashes)} "
            f"(the finding has {', '.join(FINDING_FIELDS)})"
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        problems.append(
            f"is not a valid JSON Schema: {exc.message}" + (f" at {where}" if where else "")
        )
        return problems
    problems += [f"has a $ref that does not resolve here: {ref}" for ref in _unresolved(schema)]
    return problems


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _unresolved(schema: dict[str, Any]) -> list[str]:
    """The `$ref`s that name nothing inside the schema (nothing is fetched from elsewhere)."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    base = "urn:vigil:output-schema"
    registry: Registry[Any] = Registry().with_resource(base, DRAFT202012.create_resource(schema))
    resolver = registry.resolver(base_uri=base)
    unresolved = []
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            unresolved.append(ref)
    return unresolved


def extra_fields(schema: dict[str, Any], answer: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The answer's fields that `schema` names, and why they do not fit it ("" if they do)."""
    from jsonschema import Draft202012Validator
    from referencing.exceptions import Unresolvable

    names = schema.get("properties", {})
    fields = {name: answer[name] for name in names if name in answer}
    try:
        errors = sorted(
            Draft202012Validator(schema).iter_errors(fields), key=lambda e: list(e.path)
        )
    except Unresolvable as exc:  # validation refuses such a schema; say so, never raise
        return fields, f"the outputSchema cannot be checked: {exc}"
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.path)
        return fields, f"{where or 'answer'}: {first.message}"
    return fields, ""
