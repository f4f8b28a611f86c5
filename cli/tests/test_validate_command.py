"""`vigil validate PATH`, run as a user runs it: `python -m vigil.cli validate` in a subprocess.

What the user relies on: exit status 0 only when every definition is valid, and for every
problem a line that says which file, which resource and which field — never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
RUN_TIMEOUT_SECONDS = 30.0

SOURCE = """\
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: alertmanager, namespace: demo}
spec: {type: alertmanager}
"""

SINK = """\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: console, namespace: demo}
spec: {type: log}
"""

BROKEN_WORKFLOW = """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: broken, namespace: demo}
spec:
  trigger:
    sources: [alertmanager]
    matchers: ['alertname="HostDiskFillingUp"']
  steps:
    - name: measure
      cli: {command: ["df", "-P"]}
    - name: page
      when: 'steps.measure.output.exitCode =='
      notify: {sinks: [console], message: "disk filling up"}
    - name: report
      notify: {sinks: [nobody], message: "disk filling up"}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def vigil_validate(path: Path, *, cwd: Path) -> Run:
    completed = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    return Run(code=completed.returncode, stdout=completed.stdout, stderr=completed.stderr)


def assert_no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr


def test_the_quickstart_is_valid_and_exits_zero(tmp_path: Path) -> None:
    run = vigil_validate(QUICKSTART, cwd=tmp_path)

    assert run.code == 0, run.stdout + run.stderr
    assert run.lines[-1] == "4 valid"
    assert sorted(line.split(" (")[0] for line in run.lines[:-1]) == [
        "ok    Sink demo/console",
        "ok    Sink demo/team-webhook",
        "ok    Source demo/alertmanager",
        "ok    Workflow demo/disk-filling-up",
    ]
    assert_no_traceback(run)


def test_a_single_file_can_be_validated(tmp_path: Path) -> None:
    run = vigil_validate(QUICKSTART / "source.yaml", cwd=tmp_path)

    assert run.code == 0, run.stdout
    assert run.lines == [
        f"ok    Source demo/alertmanager ({QUICKSTART / 'source.yaml'}#1)",
        "1 valid",
    ]


def write_folder(folder: Path, workflow: str) -> Path:
    """A Source, a `console` Sink and the given workflow; returns the workflow's file."""
    (folder / "source.yaml").write_text(SOURCE)
    (folder / "sinks.yaml").write_text(SINK)
    workflow_file = folder / "workflow.yaml"
    workflow_file.write_text(workflow)
    return workflow_file


def workflow_line(run: Run, workflow_file: Path) -> str:
    (line,) = [line for line in run.lines if line.startswith("error Workflow")]
    assert line.startswith(f"error Workflow demo/broken ({workflow_file}#1): ")
    return line


def test_bad_cel_in_when_exits_one_naming_file_resource_and_field(tmp_path: Path) -> None:
    workflow_file = write_folder(
        tmp_path, BROKEN_WORKFLOW.replace("sinks: [nobody]", "sinks: [console]")
    )

    run = vigil_validate(tmp_path, cwd=tmp_path)

    assert run.code == 1
    line = workflow_line(run, workflow_file)
    assert "spec.steps[1].when: CEL 'steps.measure.output.exitCode ==' does not compile" in line
    assert "ok    Source demo/alertmanager" in run.stdout
    assert "ok    Sink demo/console" in run.stdout
    assert run.lines[-1] == "2 valid, 1 invalid"
    assert_no_traceback(run)


def test_an_unknown_sink_exits_one_naming_file_resource_and_field(tmp_path: Path) -> None:
    workflow_file = write_folder(tmp_path, BROKEN_WORKFLOW.replace("exitCode ==", "exitCode == 0"))

    run = vigil_validate(tmp_path, cwd=tmp_path)

    assert run.code == 1
    line = workflow_line(run, workflow_file)
    assert line.endswith(": spec.steps[2].notify.sinks: Sink demo/nobody is not defined")
    assert run.lines[-1] == "2 valid, 1 invalid"
    assert_no_traceback(run)


def test_a_workflow_with_both_problems_reports_both_and_exits_one(tmp_path: Path) -> None:
    write_folder(tmp_path, BROKEN_WORKFLOW)

    run = vigil_validate(tmp_path, cwd=tmp_path)

    assert run.code == 1
    assert "spec.steps[1].when: CEL" in run.stdout
    assert "spec.steps[2].notify.sinks: Sink demo/nobody is not defined" in run.stdout
    assert run.lines[-1] == "2 valid, 1 invalid"
    assert_no_traceback(run)


def test_every_output_line_is_a_verdict_naming_the_resource_or_the_summary(
    tmp_path: Path,
) -> None:
    """Grep-able output: `ok …`/`error …` lines, then the count; no continuation lines."""
    workflow_file = write_folder(tmp_path, BROKEN_WORKFLOW)

    run = vigil_validate(tmp_path, cwd=tmp_path)

    *verdicts, summary = run.lines
    assert summary == "2 valid, 1 invalid"
    assert all(line.startswith(("ok    ", "error ")) for line in verdicts), run.stdout
    line = workflow_line(run, workflow_file)
    assert "spec.steps[2].notify.sinks: Sink demo/nobody is not defined" in line


def test_a_missing_path_exits_one_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"

    run = vigil_validate(missing, cwd=tmp_path)

    assert run.code == 1
    assert run.lines[0] == f"error {missing}: no such file or directory"
    assert_no_traceback(run)


def test_a_yaml_syntax_error_exits_one_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "source.yaml").write_text(SOURCE)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Sink\nmetadata: {name: console\n  spec: [\n")

    run = vigil_validate(tmp_path, cwd=tmp_path)

    assert run.code == 1
    assert any(line.startswith(f"error {broken}: not valid YAML") for line in run.lines), run.stdout
    assert "ok    Source demo/alertmanager" in run.stdout, "the other files are still checked"
    assert run.lines[-1] == "1 valid, 1 invalid"
    assert_no_traceback(run)


def test_a_folder_without_definitions_exits_one(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")

    run = vigil_validate(tmp_path, cwd=tmp_path)

    assert run.code == 1
    assert run.lines == [f"error {tmp_path}: no Source, Workflow or Sink found"]
