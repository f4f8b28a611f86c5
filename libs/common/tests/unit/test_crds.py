"""The committed CRDs are what `vigil.common.crds` generates, and they are structural."""

from __future__ import annotations

from pathlib import Path

import cel
import pytest
import yaml

from tests.support.crd_check import CRDS, walk
from vigil.common.crds import KINDS, files


def test_the_committed_crds_are_what_the_models_generate() -> None:
    """Fails when a resource model changed and `make crds` was not run."""
    committed = {
        path.name: path.read_text(encoding="utf-8") for path in CRDS.glob("*.vigil.dev.yaml")
    }
    generated = files()
    assert sorted(committed) == sorted(generated), "run `make crds`"
    for name, text in generated.items():
        assert committed[name] == text, f"crds/{name} is stale: run `make crds`"


@pytest.mark.parametrize("path", sorted(CRDS.glob("*.vigil.dev.yaml")), ids=lambda p: Path(p).name)
def test_every_crd_is_structural_with_status_columns_and_a_category(path: Path) -> None:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["categories"] == ["vigil"]
    assert crd["spec"]["names"]["shortNames"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Ready"
    assert columns[-1] == "Age"
    for node in walk(version["schema"]["openAPIV3Schema"]):
        assert "type" in node, f"a structural schema types every node: {node}"
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title"} & node.keys()
        assert not ("properties" in node and "additionalProperties" in node)
        assert node.get("additionalProperties", {}) is not False
        if node["type"] == "array":
            assert "items" in node
        for rule in node.get("x-kubernetes-validations", []):
            cel.compile(rule["rule"])  # raises if the rule does not compile
            assert rule["message"]


def test_lists_a_rule_iterates_are_bounded() -> None:
    """The API server refuses a CEL rule over an unbounded list (its cost is unbounded)."""
    (workflows,) = [k for k in KINDS if k.kind == "Workflow"]
    crd = yaml.safe_load((CRDS / f"{workflows.name}.yaml").read_text(encoding="utf-8"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["steps"]["maxItems"] == 64
    assert spec["properties"]["onFailure"]["maxItems"] == 64
