"""The overlays, asserted on the rendered objects: dev (one replica each, traces to Jaeger,
Prometheus scraping every service, the dashboard provisioned) and prod (replicas, HPAs,
PDBs, NetworkPolicies, a 3-node NATS cluster that fsyncs every write, streams of 3
replicas, MongoDB as a 3-member replica set written with w=majority)."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.support.closure import SERVICES
from tests.support.kustomize import KUSTOMIZE, Manifest, find, render

SCALED = ("engine", "executor", "sink")


@cache
def rendered(overlay: str) -> list[Manifest]:
    return render(KUSTOMIZE / "overlays" / overlay)


def settings(overlay: str) -> dict[str, str]:
    data: dict[str, str] = find(rendered(overlay), "ConfigMap", "vigil-settings")["data"]
    return data


def container(workload: Manifest) -> dict[str, Any]:
    first: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return first


def labels(workload: Manifest) -> dict[str, str]:
    found: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return found


def nats_conf(overlay: str) -> str:
    nats = find(rendered(overlay), "StatefulSet", "nats")
    (config,) = [v for v in nats["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    conf: str = find(rendered(overlay), "ConfigMap", config["configMap"]["name"])["data"][
        "nats.conf"
    ]
    return re.sub(r"#.*", "", conf)


# --- dev ------------------------------------------------------------------------------


def test_dev_runs_one_replica_of_everything() -> None:
    scaled = [o for o in rendered("dev") if o["kind"] in {"Deployment", "StatefulSet"}]
    assert {o["metadata"]["name"]: o["spec"]["replicas"] for o in scaled} == {
        o["metadata"]["name"]: 1 for o in scaled
    }
    assert not [o for o in rendered("dev") if o["kind"] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("service", SERVICES)
def test_dev_services_export_traces_to_jaeger(service: str) -> None:
    endpoint = urlsplit(settings("dev")["OTEL_EXPORTER_OTLP_ENDPOINT"])
    jaeger = find(rendered("dev"), "Service", endpoint.hostname or "")
    assert endpoint.port in {p["port"] for p in jaeger["spec"]["ports"] if "otlp" in p["name"]}
    assert endpoint.port == 4318, "the exporter speaks OTLP over HTTP (4318), not gRPC"
    deployment = find(rendered("dev"), "Deployment", f"vigil-{service}")
    sources = [s["configMapRef"]["name"] for s in container(deployment)["envFrom"]]
    assert find(rendered("dev"), "ConfigMap", sources[0])["data"] == settings("dev")


def _kept(relabel_configs: list[dict[str, Any]], source: str, value: str) -> bool:
    """Whether the job's `keep` rules on `source` let `value` through (absent: they do)."""
    for rule in relabel_configs:
        if rule.get("action") == "keep" and rule["source_labels"] == [source]:
            return re.fullmatch(rule["regex"], value) is not None
    return True


@pytest.mark.parametrize("service", SERVICES)
def test_dev_prometheus_scrapes_every_service(service: str) -> None:
    objects = rendered("dev")
    prometheus = find(objects, "Deployment", "prometheus")
    (config,) = [
        v["configMap"]["name"]
        for v in prometheus["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    ]
    jobs = yaml.safe_load(find(objects, "ConfigMap", config)["data"]["prometheus.yml"])
    deployment = find(objects, "Deployment", f"vigil-{service}")
    component = labels(deployment)["app.kubernetes.io/component"]
    port = container(deployment)["ports"][0]["name"]
    scraping = [
        job
        for job in jobs["scrape_configs"]
        if _kept(
            job["relabel_configs"],
            "__meta_kubernetes_pod_label_app_kubernetes_io_component",
            component,
        )
        and _kept(job["relabel_configs"], "__meta_kubernetes_pod_container_port_name", port)
    ]
    assert len(scraping) == 1, f"{service}: scraped by {len(scraping)} jobs"
    if service == "ingest":  # its /metrics is behind the API's tokens
        assert scraping[0]["authorization"]["credentials_file"]


def test_dev_grafana_provisions_the_dashboard() -> None:
    objects = rendered("dev")
    grafana = find(objects, "Deployment", "grafana")
    volumes = {v["name"]: v for v in grafana["spec"]["template"]["spec"]["volumes"]}
    dashboards = volumes["dashboards"]["configMap"]["name"]
    assert dashboards.startswith("vigil-grafana-dashboards")
    for text in find(objects, "ConfigMap", dashboards)["data"].values():
        assert json.loads(text)["title"]
    mount = next(m for m in container(grafana)["volumeMounts"] if m["name"] == "dashboards")[
        "mountPath"
    ]
    provisioning = find(objects, "ConfigMap", volumes["provisioning"]["configMap"]["name"])
    providers = yaml.safe_load(provisioning["data"]["grafana-dashboards.yaml"])["providers"]
    assert [p["options"]["path"] for p in providers] == [mount]
    sources = yaml.safe_load(provisioning["data"]["grafana-datasources.yaml"])["datasources"]
    assert {s["type"] for s in sources} == {"prometheus", "jaeger"}


# --- prod -----------------------------------------------------------------------------


def test_prod_nats_is_a_three_node_cluster_that_fsyncs_every_write() -> None:
    conf = nats_conf("prod")
    jetstream = re.search(r"jetstream \{(.*?)\}", conf, re.DOTALL)
    assert jetstream is not None
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream.group(1), re.MULTILINE)
    routes = re.findall(r"nats://(nats-\d)\.nats-headless:6222", conf)
    assert sorted(routes) == ["nats-0", "nats-1", "nats-2"]
    assert find(rendered("prod"), "StatefulSet", "nats")["spec"]["replicas"] == 3
    assert "include ./vigil-users.conf" in conf
    servers = settings("prod")["VIGIL_NATS_URL"].split(",")
    assert sorted(urlsplit(s).hostname or "" for s in servers) == [
        f"nats-{i}.nats-headless" for i in range(3)
    ]


def test_prod_streams_have_three_replicas() -> None:
    assert settings("prod")["VIGIL_STREAM_REPLICAS"] == "3"


def test_prod_mongodb_is_a_three_member_replica_set_written_with_majority() -> None:
    url = urlsplit(settings("prod")["VIGIL_STORE_URL"])
    query = parse_qs(url.query)
    assert query["w"] == ["majority"]
    assert query["replicaSet"] == ["rs0"]
    hosts = url.netloc.rpartition("@")[2].split(",")
    assert hosts == [f"mongodb-{i}.mongodb:27017" for i in range(3)]
    mongodb = find(rendered("prod"), "StatefulSet", "mongodb")
    assert mongodb["spec"]["replicas"] == 3
    args = container(mongodb)["args"]
    assert args[args.index("--replSet") + 1] == "rs0"
    init = container(find(rendered("prod"), "Job", "mongodb-init"))
    assert {e["name"]: e.get("value") for e in init["env"]}["MONGODB_MEMBERS"] == "3"


@pytest.mark.parametrize("service", SCALED)
def test_prod_scales_the_consumers_with_an_hpa_and_a_pdb(service: str) -> None:
    objects = rendered("prod")
    name = f"vigil-{service}"
    replicas = find(objects, "Deployment", name)["spec"]["replicas"]
    assert replicas >= 2
    hpa = find(objects, "HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert hpa["spec"]["minReplicas"] == replicas
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = find(objects, "PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_prod_controller_stays_single() -> None:
    """kopf runs standalone: two controllers would both write status."""
    assert find(rendered("prod"), "Deployment", "vigil-controller")["spec"]["replicas"] == 1
