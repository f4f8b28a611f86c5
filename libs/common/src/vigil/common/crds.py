"""The CustomResourceDefinitions of `vigil.dev`, generated from the resource models.

`make crds` writes them to `crds/`; a test fails when the committed files differ from what
this module generates, so the API server and the controller check the same schema. The
pydantic JSON schema is made structural (references inlined; titles and defaults dropped,
the controller applies the defaults; `X | None` becomes `X`: the API server prunes a null
of a field that is not `nullable`, which is what `None` means to the models), and the CEL
rules the models declare (`x-kubernetes-validations`) come along.

Run as `python -m vigil.common.crds [FOLDER]` (default `crds`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vigil.common.resource_base import YAML11_ON, Spec
from vigil.common.resources import ResourceStatus, SourceSpec, WorkflowSpec
from vigil.common.sink_resources import SinkSpec

GROUP = "vigil.dev"
VERSION = "v1alpha1"
CATEGORY = "vigil"

type Schema = dict[str, Any]

_DROPPED = frozenset({"title", "default", "additionalProperties"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[Spec]
    columns: tuple[tuple[str, str, str], ...]  # (name, type, JSONPath)

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


_READY = ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status')
_AGE = ("Age", "date", ".metadata.creationTimestamp")

KINDS = (
    Kind(
        kind="Source",
        plural="sources",
        short_names=("vsrc",),
        spec=SourceSpec,
        columns=(
            _READY,
            ("Type", "string", ".spec.type"),
            ("Webhook", "string", ".status.webhookPath"),
            ("Next fire", "date", ".status.nextFireAt"),
            _AGE,
        ),
    ),
    Kind(
        kind="Workflow",
        plural="workflows",
        short_names=("vwf",),
        spec=WorkflowSpec,
        columns=(
            _READY,
            ("Trigger", "string", ".status.trigger"),
            ("Last", "string", ".status.lastExecution.state"),
            ("Last-Run", "date", ".status.lastExecution.time"),
            _AGE,
        ),
    ),
    Kind(
        kind="Sink",
        plural="sinks",
        short_names=("vsink",),
        spec=SinkSpec,
        columns=(_READY, ("Type", "string", ".spec.type"), _AGE),
    ),
)


def structural(model: type[Spec]) -> Schema:
    """The model's JSON schema as a Kubernetes structural schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Schema] = schema.pop("$defs", {})
    return _with_yaml11_on(_convert(schema, definitions))


def _with_yaml11_on(node: Schema) -> Schema:
    """Accept `on` also under the key kubectl turns it into (`"true"`, YAML 1.1)."""
    properties = node.get("properties")
    if isinstance(properties, dict):
        for sub in properties.values():
            _with_yaml11_on(sub)
        if "on" in properties:
            properties[YAML11_ON] = {
                **properties["on"],
                "description": "`on`, as kubectl reads an unquoted `on:` key (YAML 1.1)",
            }
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _with_yaml11_on(node[key])
    return node


def _convert(node: Schema, definitions: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        return _convert(definitions[node["$ref"].rsplit("/", 1)[1]], definitions)
    alternatives = node.get("anyOf")
    if alternatives is not None:
        present = [a for a in alternatives if a.get("type") != "null"]
        if len(present) != 1:
            msg = f"no structural form for anyOf {alternatives}"
            raise ValueError(msg)
        rest = {k: v for k, v in node.items() if k not in ("anyOf", *_DROPPED)}
        return {**_convert(present[0], definitions), **rest}
    converted: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "const":
            converted["enum"] = [value]
        elif key == "properties":
            converted[key] = {name: _convert(sub, definitions) for name, sub in value.items()}
        elif key == "items":
            converted[key] = _convert(value, definitions)
        else:
            converted[key] = value
    if isinstance(node.get("additionalProperties"), dict):  # a map: keep its value schema
        converted["additionalProperties"] = _convert(node["additionalProperties"], definitions)
    # `type` first, for a reader of the YAML.
    return dict(sorted(converted.items(), key=lambda item: item[0] != "type"))


def definition(kind: Kind) -> Schema:
    """The CRD of `kind`: one served and stored version, a status subresource."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(kind.spec),
            "status": structural(ResourceStatus),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.name, "labels": {"app.kubernetes.io/part-of": "vigil"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind_, "jsonPath": path}
                        for name, kind_, path in kind.columns
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True  # spell every schema out: no `&id001` anchors in a CRD


def render(kind: Kind) -> str:
    header = "# Generated from vigil.common.resources by `make crds`; do not edit.\n"
    return header + yaml.dump(definition(kind), Dumper=_Dumper, sort_keys=False, width=100)


def files() -> dict[str, str]:
    """File name → content of every CRD."""
    return {f"{kind.name}.yaml": render(kind) for kind in KINDS}


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "crds")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (folder / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {folder / name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
