"""The Grafana dashboard as deployed: `deploy/grafana` renders (with `kubectl kustomize`,
where kubectl is installed) to one ConfigMap `vigil-grafana-dashboards`, unhashed, that
holds the dashboard JSON as it is in the repository; every panel queries Prometheus through
the dashboard's datasource variable, each query on a `vigil_` metric."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "vigil-dashboard.json"


def test_the_dashboard_queries_only_vigil_metrics_through_its_datasource_variable() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        for target in panel["targets"]:
            names = set(re.findall(r"\b([a-z_]+)(?:\{|\[|\))", target["expr"]))
            metrics = {n for n in names if n.startswith("vigil_")}
            assert metrics, target["expr"]


def test_the_kustomization_renders_one_unhashed_configmap_holding_the_dashboard() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered here")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(GRAFANA)], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    (config_map,) = list(yaml.safe_load_all(rendered))
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["name"] == "vigil-grafana-dashboards"
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert json.loads(config_map["data"]["vigil-dashboard.json"]) == json.loads(
        DASHBOARD.read_text(encoding="utf-8")
    )
