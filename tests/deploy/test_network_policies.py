"""The prod overlay's NetworkPolicies, evaluated on the rendered pods' labels: everything
is denied by default; only ingest is reachable from outside; Vigil's pods reach NATS and
MongoDB (and DNS), and only the ones that need it reach farther (the API server, the
notification endpoints, the model servers), each of those named here on purpose."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from tests.support.closure import SERVICES
from tests.support.kustomize import KUSTOMIZE, Manifest, render

type Labels = dict[str, str]
type Selector = dict[str, Any]
# Egress to any address, by port: who has it and why (the policy's comment says more).
OPEN_EGRESS: dict[str, set[int]] = {
    "vigil-controller": {443, 6443},  # the API server
    "vigil-executor": {443, 6443, 80, 11434},  # the API server; model servers, agent tools
    "vigil-ingest": {443, 6443},  # the API server (Secrets)
    "vigil-sink": {443, 6443, 80, 25, 465, 587},  # the API server; notification endpoints
}
KUBE_DNS: Labels = {"k8s-app": "kube-dns"}


@cache
def objects() -> list[Manifest]:
    return render(KUSTOMIZE / "overlays" / "prod")


def pods() -> dict[str, Labels]:
    """Workload name → the labels of its pods."""
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in objects()
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}
    }


def policies() -> list[dict[str, Any]]:
    return [o["spec"] for o in objects() if o["kind"] == "NetworkPolicy"]


def selects(selector: Selector, labels: Labels) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = (
            expression["key"],
            expression["operator"],
            expression.get("values", []),
        )
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def rules(labels: Labels, direction: str) -> list[dict[str, Any]]:
    """The ingress or egress rules of every policy that selects a pod with `labels`."""
    key = "ingress" if direction == "Ingress" else "egress"
    return [
        rule
        for spec in policies()
        if direction in spec["policyTypes"] and selects(spec["podSelector"], labels)
        for rule in spec.get(key, [])
    ]


def peers(rule: dict[str, Any], direction: str) -> list[dict[str, Any]] | None:
    """A rule's peers; None when it has none, i.e. it allows every address."""
    found: list[dict[str, Any]] | None = rule.get("from" if direction == "Ingress" else "to")
    return found


def is_open(peer_list: list[dict[str, Any]] | None) -> bool:
    """Whether the peers include addresses outside the cluster's pods (or every pod)."""
    if peer_list is None:
        return True
    return any(
        "ipBlock" in peer or (peer.get("namespaceSelector") == {} and "podSelector" not in peer)
        for peer in peer_list
    )


def ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def test_everything_is_denied_by_default() -> None:
    (deny,) = [
        spec
        for spec in policies()
        if spec["podSelector"] == {} and not spec.get("ingress") and not spec.get("egress")
    ]
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]


def test_only_ingest_is_reachable_from_outside() -> None:
    reachable = {
        name: set().union(
            *(ports(r) for r in rules(labels, "Ingress") if is_open(peers(r, "Ingress")))
        )
        for name, labels in pods().items()
    }
    assert {name: p for name, p in reachable.items() if p} == {"vigil-ingest": {8080}}


@pytest.mark.parametrize("service", SERVICES)
def test_services_reach_nats_mongodb_and_dns_and_named_endpoints_only(service: str) -> None:
    name = f"vigil-{service}"
    labels = pods()[name]
    destinations: set[str] = set()
    open_ports: set[int] = set()
    for rule in rules(labels, "Egress"):
        peer_list = peers(rule, "Egress")
        if is_open(peer_list):
            open_ports |= ports(rule)
            continue
        for peer in peer_list or []:
            selector = peer.get("podSelector", {})
            destinations |= {n for n, pod in pods().items() if selects(selector, pod)}
            if selects(selector, KUBE_DNS):
                destinations.add("kube-dns")
    wanted = {"nats", "kube-dns"} | ({"mongodb"} if service != "controller" else set())
    assert destinations == wanted
    assert open_ports == OPEN_EGRESS.get(name, set())


@pytest.mark.parametrize(
    ("server", "port", "clients"),
    [
        ("nats", 4222, {*(f"vigil-{s}" for s in SERVICES), "vigil-provision"}),
        ("mongodb", 27017, {"vigil-ingest", "vigil-engine", "vigil-executor", "vigil-sink"}),
    ],
)
def test_the_clients_reach_the_servers(server: str, port: int, clients: set[str]) -> None:
    """Both ends agree: the server admits them and they may send to it."""
    server_labels = pods()[server]
    admitted = {
        name
        for name, labels in pods().items()
        for rule in rules(server_labels, "Ingress")
        if port in ports(rule)
        and any(selects(p.get("podSelector", {}), labels) for p in peers(rule, "Ingress") or [])
    }
    assert clients <= admitted
    for client in clients:
        assert any(
            port in ports(rule)
            and any(
                selects(p.get("podSelector", {}), server_labels)
                for p in peers(rule, "Egress") or []
            )
            for rule in rules(pods()[client], "Egress")
        ), f"{client} may not send to {server}:{port}"


def test_cluster_peers_reach_each_other() -> None:
    for server, port in (("nats", 6222), ("mongodb", 27017)):
        labels = pods()[server]
        for direction in ("Ingress", "Egress"):
            assert any(
                port in ports(rule)
                and any(
                    selects(p.get("podSelector", {}), labels) for p in peers(rule, direction) or []
                )
                for rule in rules(labels, direction)
            ), f"{server} {direction} {port}"
