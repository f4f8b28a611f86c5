"""deploy/kustomize: the base and each overlay render with `kubectl kustomize`, every
object validates against the Kubernetes schemas offline, and the base runs each service as
the images and settings expect (probes, non-root, read-only root, its own NATS user)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from tests.support.closure import SERVICES
from tests.support.kustomize import KUSTOMIZE, ROOT, Manifest, find, problems, render
from vigil.common.settings import ServiceSettings
from vigil.controller.settings import ControllerSettings
from vigil.engine.settings import EngineSettings
from vigil.executor.settings import ExecutorSettings
from vigil.ingest.settings import IngestSettings
from vigil.sink.settings import SinkSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "controller": ControllerSettings,
    "engine": EngineSettings,
    "executor": ExecutorSettings,
    "sink": SinkSettings,
}
# Read by the provisioning module itself (vigil.common.adapters.provisioning).
PROVISIONING_ONLY = frozenset({"VIGIL_PROVISION_TIMEOUT_SECONDS"})
WORKLOADS = ("Deployment", "StatefulSet", "Job")
TARGETS = ("base", "overlays/dev", "overlays/prod")


@cache
def rendered(target: str) -> list[Manifest]:
    return render(KUSTOMIZE / target)


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(c) for c in choices if str(c).isupper()}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in WORKLOADS]


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_every_object_validates(target: str) -> None:
    objects = rendered(target)
    assert objects, f"{target} rendered nothing"
    assert list(problems(objects)) == []


def test_the_validation_finds_a_mistake() -> None:
    """The check above is not vacuous: a misspelt field and a wrong type are reported."""
    objects = [dict(o) for o in rendered("base")]
    engine = find(objects, "Deployment", "vigil-engine")
    broken = {**engine, "spec": {**engine["spec"], "replicas": "two"}}
    service = find(objects, "Service", "vigil-engine")
    typo = {**service, "spec": {**service["spec"], "selectr": {}}}
    found = list(problems([broken, typo]))
    assert len(found) == 2, found
    assert "replicas" in found[0]
    assert "selectr" in found[1]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_deployment_a_service_and_an_account(service: str) -> None:
    objects = rendered("base")
    name = f"vigil-{service}"
    deployment = find(objects, "Deployment", name)
    find(objects, "Service", name)
    find(objects, "ServiceAccount", name)
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == name
    (container,) = spec["containers"]
    assert container["image"] == f"vigil-{service}:dev"
    port = container["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VIGIL_NATS_USER"] == service
    mounted = {v["name"]: v for v in spec["volumes"]}
    assert mounted["nats-password"]["secret"]["secretName"] == f"vigil-nats-{service}"
    assert env["VIGIL_NATS_PASSWORD_FILE"].startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "nats-password")
    )
    assert not [e for e in container["env"] if "PASSWORD" in e["name"] and "value" not in e]
    ports = {p["containerPort"] for p in container["ports"]}
    if service == "ingest":
        assert (env["VIGIL_INGEST_HTTP_HOST"], ports) == ("0.0.0.0", {8080})
    else:
        prefix = f"VIGIL_{service.upper()}"
        assert (env[f"{prefix}_OPS_HOST"], env[f"{prefix}_OPS_PORT"]) == ("0.0.0.0", "9090")
        assert ports == {9090}


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_locked_down(target: str) -> None:
    """Non-root, no privilege escalation, read-only root, no capabilities, seccomp, limits."""
    for workload in workloads(rendered(target)):
        spec = pod_spec(workload)
        where = f"{target}: {workload['kind']}/{workload['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("target", TARGETS)
def test_every_vigil_setting_set_is_one_a_process_reads(target: str) -> None:
    """A misspelt VIGIL_ name would be ignored silently (extra="ignore"): not here."""
    objects = rendered(target)
    shared = find(objects, "ConfigMap", "vigil-settings")["data"]
    known = {name for settings in SETTINGS.values() for name in env_names(settings)}
    assert {n for n in shared if n.startswith("VIGIL_")} - known == set()
    for service, settings in SETTINGS.items():
        (container,) = pod_spec(find(objects, "Deployment", f"vigil-{service}"))["containers"]
        names = {e["name"] for e in container["env"] if e["name"].startswith("VIGIL_")}
        assert names - env_names(settings) == set(), service
    (job,) = pod_spec(find(objects, "Job", "vigil-provision"))["containers"]
    names = {e["name"] for e in job["env"]}
    assert names - env_names(ServiceSettings) - PROVISIONING_ONLY == set()


def test_the_shared_settings_select_kubernetes_mode() -> None:
    shared = find(rendered("base"), "ConfigMap", "vigil-settings")["data"]
    assert shared["VIGIL_CONTROLLER_SOURCE"] == "kubernetes"
    assert shared["VIGIL_EXECUTOR_RUNNER"] == "kubernetes"
    assert shared["VIGIL_SECRETS_FROM"] == "kubernetes"
    assert shared["VIGIL_NATS_PROVISION"] == "false"
    assert shared["VIGIL_STORE_URL"].startswith("mongodb://")
    assert shared["VIGIL_STREAM_REPLICAS"] == "1"


def test_nats_has_every_users_password_from_its_secret() -> None:
    """nats-server resolves `$VIGIL_NATS_<USER>_PASSWORD` of vigil-users.conf at start."""
    users_file = (ROOT / "deploy" / "nats" / "vigil-users.conf").read_text(encoding="utf-8")
    wanted = set(re.findall(r"password: \$(VIGIL_NATS_\w+_PASSWORD)", users_file))
    assert len(wanted) == 6
    nats = find(rendered("base"), "StatefulSet", "nats")
    (container,) = pod_spec(nats)["containers"]
    given = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert set(given) == wanted
    for variable, secret in given.items():
        user = variable.removeprefix("VIGIL_NATS_").removesuffix("_PASSWORD").lower()
        assert secret == f"vigil-nats-{user}"
    claims = nats["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    (volume,) = [v for v in pod_spec(nats)["volumes"] if "configMap" in v]
    config = find(rendered("base"), "ConfigMap", volume["configMap"]["name"])
    assert "include ./vigil-users.conf" in config["data"]["nats.conf"]
    assert config["data"]["vigil-users.conf"] == users_file
    assert "store_dir: /data/jetstream" in config["data"]["nats.conf"]


def test_every_secret_referenced_is_one_the_secrets_script_makes() -> None:
    from deploy.vigil_secrets import NATS_USERS, secrets_yaml

    made = set(re.findall(r'"name": "([^"]+)"', secrets_yaml("vigil")))
    assert made >= {f"vigil-nats-{u}" for u in NATS_USERS}
    for target in TARGETS:
        referenced = set()
        for workload in workloads(rendered(target)):
            spec = pod_spec(workload)
            referenced |= {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
            for container in spec["containers"]:
                referenced |= {
                    e["valueFrom"]["secretKeyRef"]["name"]
                    for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})
                }
        assert referenced - made == set(), target
