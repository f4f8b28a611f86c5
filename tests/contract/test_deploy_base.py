"""`deploy/kustomize/base`: it renders, carries the committed CRDs, and grants the
controller, the executor, ingest and the sink only what they use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kustomize" / "base"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def rules(role: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the ClusterRole grants."""
    (cluster_role,) = [
        d
        for d in documents(BASE / f"rbac-{role}.yaml")
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == f"vigil-{role}"
    ]
    return {
        (group, resource, verb)
        for rule in cluster_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_controller_may_read_its_kinds_and_secrets_write_status_and_events_only() -> None:
    granted = rules("controller")
    kinds = {"sources", "workflows", "sinks"}
    assert {(g, r, v) for g, r, v in granted if g == "vigil.dev"} == {
        *{("vigil.dev", k, v) for k in kinds for v in ("get", "list", "watch")},
        *{("vigil.dev", f"{k}/status", v) for k in kinds for v in ("get", "patch")},
    }
    assert {(r, v) for g, r, v in granted if g == "" and r == "secrets"} == {
        ("secrets", "get"),
        ("secrets", "list"),
        ("secrets", "watch"),
    }
    assert {v for _, r, v in granted if r == "events"} == {"create"}
    assert not {r for _, r, _ in granted} - {
        *kinds,
        *(f"{k}/status" for k in kinds),
        "secrets",
        "events",
    }


def test_the_executor_may_run_read_and_delete_pods_only() -> None:
    assert rules("executor") == {
        *{("", "pods", v) for v in ("create", "get", "list", "watch", "delete")},
        ("", "pods/log", "get"),
    }


@pytest.mark.parametrize("role", ["ingest", "sink"])
def test_ingest_and_the_sink_may_get_secrets_by_name_only(role: str) -> None:
    """They resolve a Secret's value at use; no list or watch, nothing else."""
    assert rules(role) == {("", "secrets", "get")}


def test_the_base_renders_with_the_committed_crds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on this machine: `kubectl kustomize` was not checked")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    crds = {d["metadata"]["name"]: d for d in objects if d["kind"] == "CustomResourceDefinition"}
    assert sorted(crds) == ["sinks.vigil.dev", "sources.vigil.dev", "workflows.vigil.dev"]
    for name, crd in crds.items():
        (committed,) = documents(ROOT / "crds" / f"{name}.yaml")
        assert crd["spec"] == committed["spec"]
    accounts = {d["metadata"]["name"]: d for d in objects if d["kind"] == "ServiceAccount"}
    assert {a["metadata"]["namespace"] for a in accounts.values()} == {"vigil"}
    assert sorted(accounts) == [
        "vigil-controller",
        "vigil-engine",  # no role bound, no token mounted: the engine calls no Kubernetes API
        "vigil-executor",
        "vigil-ingest",
        "vigil-sink",
    ]
