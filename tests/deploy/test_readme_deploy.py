"""README.md's "Deploy" section, followed where it can be without a cluster.

Each command line of its shell blocks is either one that needs a cluster (applying,
reading pods) or one that is run here, as written, from a folder where the repository's
`deploy/` and `crds/` are at hand; a line that is neither fails the test, so a new
command is either exercised or said to need a cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.kustomize import KUSTOMIZE, find, kubectl, render

ROOT = Path(__file__).resolve().parents[2]
# The first words of the lines that need a cluster.
NEEDS_A_CLUSTER = (("kubectl", "apply"), ("kubectl", "-n"), ("kubectl", "get"))
RUN_HERE = (
    ("kubectl", "kustomize"),
    ("kubernetes-validate",),
    ("python3", "deploy/vigil_secrets.py"),
)


def deploy_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Deploy\n(.*?)^## ", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no `## Deploy` section"
    return match.group(1)


def command_lines(section: str) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def needs_a_cluster(line: str) -> bool:
    """Any command of the line (a pipeline's too) that talks to a cluster."""
    for command in line.split("|"):
        words = tuple(shlex.split(command))
        if any(words[: len(prefix)] == prefix for prefix in NEEDS_A_CLUSTER):
            return True
    return False


def runs_here(line: str) -> bool:
    words = tuple(shlex.split(line))
    return any(words[: len(prefix)] == prefix for prefix in RUN_HERE)


def test_every_command_is_run_here_or_needs_a_cluster() -> None:
    lines = command_lines(deploy_section())
    assert lines, "the Deploy section shows no commands"
    unclassified = [line for line in lines if not needs_a_cluster(line) and not runs_here(line)]
    assert unclassified == []
    assert any("overlays/prod" in line and needs_a_cluster(line) for line in lines)


def test_the_commands_that_need_no_cluster_work_as_written(tmp_path: Path) -> None:
    """Run in a scratch folder (the files they write land there), the repository's
    folders linked in, with the dev venv's kubectl, kubernetes-validate and python3."""
    for folder in ("deploy", "crds"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    tools = str(Path(kubectl()).parent)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{tools}:/usr/bin:/bin"}
    lines = [line for line in command_lines(deploy_section()) if not needs_a_cluster(line)]
    assert len(lines) >= 3
    for line in lines:
        result = subprocess.run(
            ["/bin/bash", "-euo", "pipefail", "-c", line],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, f"`{line}` failed:\n{result.stdout}{result.stderr}"
    written = [d for d in yaml.safe_load_all((tmp_path / "vigil.yaml").read_text()) if d]
    assert written == render(KUSTOMIZE / "overlays" / "prod")


def test_the_validation_command_fails_on_an_invalid_manifest(tmp_path: Path) -> None:
    """The README's check is not vacuous: the same command refuses a misspelt field."""
    (line,) = [line for line in command_lines(deploy_section()) if line.startswith("kubernetes-")]
    objects = render(KUSTOMIZE / "overlays" / "prod")
    engine = find(objects, "Deployment", "vigil-engine")
    engine["spec"]["replicsa"] = 3
    (tmp_path / "vigil.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/bin/bash", "-c", line],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "replicsa" in result.stdout
