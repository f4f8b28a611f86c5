"""Schema parity: the CRDs (what the API server admits) and `vigil validate` (what the
controller accepts) agree on one corpus of documents.

Every example in the repository and every document in `crd_corpus/good` is admitted by
the CRD schema and valid to the controller: nothing valid is refused. Every document in
`crd_corpus/bad` says in its header what the CRD does with it (`# crd: rejects|admits`) and
a fragment of the controller's reason (`# vigil: …`): what the API server admits, the
controller marks not Ready with that reason. The corpus can be checked against a real
cluster too: `kubectl apply --dry-run=server -f tests/contract/crd_corpus/bad/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.crd_check import refusals
from vigil.common.validation import (
    RawDocument,
    ValidationReport,
    load_yaml_documents,
    read_documents,
    validate_documents,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "crd_corpus"
KINDS = {"Source", "Workflow", "Sink"}


def _resources(path: Path) -> list[dict[str, Any]]:
    documents = load_yaml_documents(path.read_text(encoding="utf-8"))
    return [d for d in documents if isinstance(d, dict) and d.get("kind") in KINDS]


def _with_base(path: Path) -> ValidationReport:
    base, errors = read_documents(CORPUS / "base.yaml")
    assert errors == []
    own = [
        RawDocument(origin=path.name, body=body)
        for body in load_yaml_documents(path.read_text(encoding="utf-8"))
    ]
    return validate_documents([*base, *own])


def _header(path: Path, key: str) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"# {key}: "):
            return line.removeprefix(f"# {key}: ")
    msg = f"{path.name} has no `# {key}:` line"
    raise AssertionError(msg)


GOOD = sorted(
    [*ROOT.glob("examples/**/*.yaml"), *(CORPUS / "good").glob("*.yaml")],
    key=str,
)
BAD = sorted((CORPUS / "bad").glob("*.yaml"))


def test_the_corpus_has_at_least_thirty_bad_documents() -> None:
    assert len(BAD) >= 30
    assert {_header(p, "crd") for p in BAD} == {"rejects", "admits"}


@pytest.mark.parametrize("path", GOOD, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_a_valid_document_is_admitted_by_the_crd_and_ready_in_the_controller(
    path: Path,
) -> None:
    resources = _resources(path)
    assert resources, f"{path} holds no Vigil resource"
    for resource in resources:
        assert refusals(resource) == [], f"the API server would refuse {path.name}"
    folder = path.parent if path.is_relative_to(ROOT / "examples") else None
    report = validate_documents(read_documents(folder)[0]) if folder else _with_base(path)
    assert report.problems() == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: Path(p).stem)
def test_a_bad_document_is_refused_by_the_crd_or_marked_not_ready(path: Path) -> None:
    (resource,) = _resources(path)
    refused = refusals(resource)
    if _header(path, "crd") == "rejects":
        assert refused, f"the CRD admits {path.name}, which its header says it rejects"
    else:
        assert refused == [], f"the CRD refuses {path.name}: {refused}"
    name = resource["metadata"]["name"]
    (status,) = [
        s for s in _with_base(path).statuses if (s.kind, s.name) == (resource["kind"], name)
    ]
    assert not status.ready
    assert _header(path, "vigil") in status.message
