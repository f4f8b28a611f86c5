"""The service images (`services/<service>/Dockerfile`), without Docker: hadolint passes on
every Dockerfile (the agent image's too); the five are one template; each installs exactly
the closure of what its service imports, from uv.lock, from wheels only; no other service
is in it. `make images` builds them where a Docker daemon runs (it says so where none does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from tests.support.closure import (
    ROOT,
    SERVICES,
    distributions_of,
    export_lines,
    exported_distributions,
    imported_modules,
    lock_closure,
    wheels,
)

DOCKERFILES = {service: ROOT / "services" / service / "Dockerfile" for service in SERVICES}
AGENT_DOCKERFILE = ROOT / "agent-image" / "Dockerfile"
UV = ROOT / ".tools" / "bin" / "uv"
# The workspace's manifests, copied into the build stage for uv to find the members.
_MANIFEST_COPY = re.compile(r"^COPY (\S+/)?pyproject\.toml \S*$", re.MULTILINE)
_FROM = re.compile(r"^FROM (\S+)", re.MULTILINE)
_ARCHES = ("x86_64", "aarch64")


def tool(name: str) -> str:
    """A console script of the dev venv (on PATH under `uv run`; beside python otherwise)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make dev` (it is in the dev group)")
    return found


def uv_export(service: str, *flags: str) -> str:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run `make dev` (it bootstraps uv)")
    command = [str(UV), "export", "--frozen", "--no-dev", "--package", f"vigil-{service}"]
    command += ["--no-hashes", "--no-header", "--no-annotate", *flags]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def final_stage(text: str) -> str:
    return text[list(_FROM.finditer(text))[-1].start() :]


@pytest.mark.parametrize(
    "dockerfile", [*DOCKERFILES.values(), AGENT_DOCKERFILE], ids=lambda p: p.parent.name
)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint {dockerfile.relative_to(ROOT)}:\n{result.stdout}"


def test_the_service_dockerfiles_are_one_template() -> None:
    """One Dockerfile with the service's name changed: a fix made in one is made in all."""
    templates = {}
    for service, path in DOCKERFILES.items():
        text = path.read_text(encoding="utf-8")
        manifests = {m.group(0) for m in _MANIFEST_COPY.finditer(text)}
        assert manifests == {
            "COPY libs/common/pyproject.toml libs/common/",
            "COPY cli/pyproject.toml cli/",
            *(f"COPY services/{s}/pyproject.toml services/{s}/" for s in SERVICES),
        }, f"{path}: every workspace member's manifest, for uv to find the workspace"
        templates[service] = _MANIFEST_COPY.sub("", text).replace(service, "@SERVICE@")
    assert len(set(templates.values())) == 1, "the service Dockerfiles differ beyond the name"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_holds_its_service_only_as_user_65532(service: str) -> None:
    text = DOCKERFILES[service].read_text(encoding="utf-8")
    final = final_stage(text)
    bases = _FROM.findall(text)
    assert len(bases) == 2, "a build stage and a final stage"
    assert bases[0] == bases[1], "both stages on one base: the venv links to its python"
    assert re.fullmatch(r"python:3\.13\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[1]), (
        f"the base pinned to a python:3.13.N-slim tag, not {bases[1]}"
    )
    assert f"--package vigil-{service}" in text
    sources = re.findall(r"^COPY (?!--from)(?:--chown=\S+ )?(\S+) ", final, re.MULTILINE)
    assert sources == ["libs/common/src/", f"services/{service}/src/"]
    assert re.search(r"^USER 65532:65532$", final, re.MULTILINE)
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", text)
    assert f'ENTRYPOINT ["python", "-m", "vigil.{service}"]' in final
    # Nothing that compiles: the final stage installs no packages at all.
    assert not re.search(r"apt-get|pip install|uv pip", final)


@pytest.mark.parametrize("service", SERVICES)
def test_no_other_service_is_in_the_closure(service: str) -> None:
    members = {
        requirement.removeprefix("-e ").strip()
        for requirement, _ in export_lines(uv_export(service))
        if "==" not in requirement
    }
    assert members == {"./libs/common", f"./services/{service}"}


# Imports inside a function body (lazy) that a service's image leaves out on purpose: that
# code never runs in that service. Anything else a service imports must be in its image.
_SCHEMAS = "vigil.common.findings checks an agent step's outputSchema: the controller (when it "
_SCHEMAS += "compiles a workflow) and the executor do that, with vigil-common[schemas]"
_KUBE = "vigil.common.adapters.service reads Secrets from the API for ingest and the sink only"
LEFT_OUT: dict[str, dict[str, str]] = {
    "ingest": {"jsonschema": _SCHEMAS, "referencing": _SCHEMAS},
    "controller": {},
    "engine": {
        "jsonschema": _SCHEMAS,
        "referencing": _SCHEMAS,
        "kubernetes-asyncio": _KUBE,
        "aiohttp": _KUBE,
    },
    "executor": {},
    "sink": {"jsonschema": _SCHEMAS, "referencing": _SCHEMAS},
}


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_packages_are_what_the_service_imports(service: str) -> None:
    """The export (what the image installs) equals the lock closure of the distributions
    the service's code imports: nothing missing, nothing carried for another service."""
    modules = imported_modules(service)
    eager = distributions_of(m for m, lazy in modules.items() if not lazy)
    lazy = distributions_of(m for m, lazy in modules.items() if lazy)
    left_out = LEFT_OUT[service]
    stale = {d for d in left_out if d not in lazy or d in eager}
    assert not stale, f"LEFT_OUT[{service!r}] names what it no longer imports lazily: {stale}"
    imported = {**lazy, **eager}
    expected = lock_closure(set(imported) - set(left_out))
    exported = exported_distributions(uv_export(service, "--no-emit-workspace"))
    assert exported - expected == set(), (
        f"vigil-{service}'s image installs packages its code never imports (directly or "
        "through what it imports): drop the dependency or the extra"
    )
    assert expected - exported == set(), (
        f"vigil-{service}'s code imports packages its image would not have: "
        + ", ".join(f"{d} ({sorted(imported[d])[0]})" for d in sorted(set(imported) - exported))
    )


def test_the_scan_finds_what_a_service_imports() -> None:
    """The comparison above is only as good as the scan: known imports must be found."""
    controller = imported_modules("controller")
    assert {"kopf", "watchfiles", "kubernetes-asyncio"} <= set(distributions_of(controller))
    engine = imported_modules("engine")
    eager = set(distributions_of(m for m, lazy in engine.items() if not lazy))
    assert {"nats-py", "google-re2", "pydantic", "python-ulid"} <= eager
    assert not eager & {"kopf", "kubernetes-asyncio", "openai", "anthropic", "jsonschema"}
    # Imported inside a function only: the store adapter picks MongoDB or SQLite by URL.
    assert engine["pymongo"] is True


def runs_here(tag: Tag, arch: str) -> bool:
    """Whether a wheel tag installs on CPython 3.13, glibc Linux, `arch`."""
    stable_abi = tag.abi == "abi3" and re.fullmatch(r"cp3(\d+)", tag.interpreter)
    python = tag.interpreter in {"cp313", "py3"} or (
        stable_abi is not None and stable_abi is not False and int(stable_abi.group(1)) <= 13
    )
    platform = tag.platform == "any" or (
        "manylinux" in tag.platform and tag.platform.endswith(arch)
    )
    return python and platform


@pytest.mark.parametrize("service", SERVICES)
def test_every_package_installs_from_a_wheel(service: str) -> None:
    """No compiler anywhere: each package has a CPython 3.13 Linux wheel for both arches."""
    missing = [
        f"{name} ({arch})"
        for name in sorted(exported_distributions(uv_export(service, "--no-emit-workspace")))
        for arch in _ARCHES
        if not any(
            runs_here(tag, arch) for file in wheels(name) for tag in parse_wheel_filename(file)[3]
        )
    ]
    assert missing == [], f"no wheel, so a build would need a compiler: {missing}"


def test_make_images_says_when_no_docker_daemon_answers(tmp_path: Path) -> None:
    """Not pretending: without a daemon `make images` fails and says nothing was built."""
    make = shutil.which("make")
    assert make is not None, "make is not installed"
    result = subprocess.run(
        [make, "--no-print-directory", "images"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "HOME": str(tmp_path),
            "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "nothing was built" in result.stderr, result.stderr
