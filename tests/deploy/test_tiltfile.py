"""tilt/Tiltfile, run with stand-ins for Tilt's functions (Starlark is Python's syntax).

Tilt itself is not installed here (no registry ships it), so the file is executed as Python
with each Tilt function recording its call; `kustomize` renders for real and `local` runs
the real command (with its kept file in a temporary folder). Then the recorded calls are
checked against the manifests and Dockerfiles they must agree with: the image names, the
Dockerfiles' entrypoints and copied folders (what live_update syncs), the dev overlay, the
resource dependencies and the port-forwards.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.closure import SERVICES
from tests.support.kustomize import KUSTOMIZE, ROOT, Manifest, render

TILTFILE = ROOT / "tilt" / "Tiltfile"
HERE = TILTFILE.parent


@dataclass
class Tilt:
    """What the Tiltfile asked Tilt to do."""

    secrets_file: Path
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[Manifest] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    kustomized: list[Path] = field(default_factory=list)

    def builtins(self) -> dict[str, Any]:
        names = [
            "local", "kustomize", "decode_yaml_stream", "encode_yaml_stream", "k8s_yaml",
            "sync", "fall_back_on", "port_forward", "k8s_resource",
        ]  # fmt: skip
        scope: dict[str, Any] = {name: getattr(self, name) for name in names}

        def load(module: str, *symbols: str) -> None:
            assert (module, symbols) == ("ext://restart_process", ("docker_build_with_restart",))
            scope["docker_build_with_restart"] = self.docker_build_with_restart

        scope["load"] = load
        return scope

    def local(self, command: str, *, quiet: bool = False, echo_off: bool = False) -> str:
        argv = shlex.split(command)
        argv[argv.index("--keep") + 1] = str(self.secrets_file)
        argv[0] = sys.executable if argv[0] == "python3" else argv[0]
        return subprocess.run(
            argv, cwd=HERE, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def kustomize(self, path: str) -> str:
        self.kustomized.append((HERE / path).resolve())
        return yaml.safe_dump_all(render(HERE / path))

    def decode_yaml_stream(self, text: str) -> list[Manifest]:
        return [d for d in yaml.safe_load_all(text) if d]

    def encode_yaml_stream(self, objects: list[Manifest]) -> str:
        return yaml.safe_dump_all(objects)

    def k8s_yaml(self, text: str) -> None:
        self.objects += [d for d in yaml.safe_load_all(text) if d]

    def docker_build_with_restart(self, ref: str, **options: Any) -> None:
        assert ref not in self.builds, f"{ref} built twice"
        self.builds[ref] = options

    def sync(self, source: str, destination: str) -> tuple[str, Path, str]:
        return ("sync", (HERE / source).resolve(), destination)

    def fall_back_on(self, files: list[str]) -> tuple[str, list[Path]]:
        return ("fall_back_on", [(HERE / f).resolve() for f in files])

    def port_forward(self, local: int, container: int, *, name: str) -> tuple[int, int]:
        return (local, container)

    def k8s_resource(self, workload: str, **options: Any) -> None:
        assert workload not in self.resources, f"k8s_resource({workload!r}) called twice"
        self.resources[workload] = options


@pytest.fixture(scope="module")
def tilt(tmp_path_factory: pytest.TempPathFactory) -> Tilt:
    recorder = Tilt(secrets_file=tmp_path_factory.mktemp("tilt") / "dev-secrets.yaml")
    code = compile(TILTFILE.read_text(encoding="utf-8"), str(TILTFILE), "exec")
    exec(code, recorder.builtins())  # noqa: S102 - the Tiltfile, with stand-ins for Tilt
    return recorder


@cache
def dev() -> list[Manifest]:
    return render(KUSTOMIZE / "overlays" / "dev")


def workloads(objects: list[Manifest]) -> dict[str, Manifest]:
    kinds = {"Deployment", "StatefulSet", "Job"}
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in kinds}


def containers(workload: Manifest) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def test_it_applies_the_dev_overlay_and_builds_every_image_the_manifests_use(tilt: Tilt) -> None:
    assert tilt.kustomized == [KUSTOMIZE / "overlays" / "dev"]
    used = {
        c["image"].partition(":")[0]
        for w in workloads(tilt.objects).values()
        for c in containers(w)
        if c["image"].startswith("vigil-")
    }
    assert used == set(tilt.builds) == {f"vigil-{s}" for s in SERVICES}


def test_the_only_change_to_the_overlay_is_a_writable_root_for_live_updates(tilt: Tilt) -> None:
    applied = [o for o in tilt.objects if o["kind"] != "Secret"]
    expected = json.loads(json.dumps(dev()))
    for name, workload in workloads(expected).items():
        if workload["kind"] == "Deployment" and name.startswith("vigil-"):
            for container in containers(workload):
                container["securityContext"]["readOnlyRootFilesystem"] = False
    assert applied == expected


def test_it_makes_every_secret_the_overlay_references(tilt: Tilt) -> None:
    made = {o["metadata"]["name"] for o in tilt.objects if o["kind"] == "Secret"}
    referenced = {
        v["secret"]["secretName"]
        for w in workloads(dev()).values()
        for v in w["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in v
    }
    assert referenced <= made
    assert tilt.secrets_file.exists(), "the Secrets are kept for the next run"


@pytest.mark.parametrize("service", SERVICES)
def test_each_build_is_the_services_dockerfile_and_syncs_what_it_copies(
    tilt: Tilt, service: str
) -> None:
    build = tilt.builds[f"vigil-{service}"]
    dockerfile = (HERE / build["dockerfile"]).resolve()
    assert dockerfile == ROOT / "services" / service / "Dockerfile"
    assert (HERE / build["context"]).resolve() == ROOT
    text = dockerfile.read_text(encoding="utf-8")
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.MULTILINE)
    assert entrypoint is not None
    assert build["entrypoint"] == json.loads(entrypoint.group(1))
    copied = {
        (ROOT / source.rstrip("/"), destination.rstrip("/"))
        for source, destination in re.findall(r"^COPY --chown=\S+ (\S+) (\S+)$", text, re.MULTILINE)
    }
    steps = build["live_update"]
    assert steps[0][0] == "fall_back_on", "fall_back_on must come first"
    assert ROOT / "uv.lock" in steps[0][1]
    assert {(source, destination) for _, source, destination in steps[1:]} == copied
    (workload,) = [w for n, w in workloads(dev()).items() if n == f"vigil-{service}"]
    context = workload["spec"]["template"]["spec"]["securityContext"]
    owner = f"{context['runAsUser']}:{context['runAsGroup']}"
    assert build["build_args"] == {"SOURCE_OWNER": owner}, "live updates write as the pod's user"
    # The restart file is written by the pod's user, in the folder SOURCE_OWNER owns.
    owned = re.search(
        r'install -d -o "\$\{SOURCE_OWNER%%:\*\}" -g "\$\{SOURCE_OWNER##\*:\}" (\S+)', text
    )
    assert owned is not None, "the Dockerfile gives SOURCE_OWNER a folder"
    assert str(Path(build["restart_file"]).parent) == owned.group(1)


def test_nats_and_mongodb_come_first(tilt: Tilt) -> None:
    resources = tilt.resources
    assert set(resources) <= set(workloads(dev())), "a k8s_resource names no workload"
    for service in SERVICES:
        assert {"nats", "mongodb"} <= set(resources[f"vigil-{service}"]["resource_deps"])


@pytest.mark.parametrize(
    ("workload", "port"), [("vigil-ingest", 8080), ("jaeger", 16686), ("grafana", 3000)]
)
def test_port_forwards_reach_the_containers(tilt: Tilt, workload: str, port: int) -> None:
    forwards = tilt.resources[workload]["port_forwards"]
    ports = {p["containerPort"] for c in containers(workloads(dev())[workload]) for p in c["ports"]}
    assert (port, port) in forwards
    assert port in ports
