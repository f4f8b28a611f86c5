"""`vigil test`: one workflow against a payload, locally, sending nothing (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.llm import openai_reply, serving

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def vigil_test(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", "test", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_runs_every_alert_of_the_payload_and_says_why_one_did_not_match() -> None:
    run = vigil_test(
        str(QUICKSTART),
        "--workflow",
        "demo/disk-filling-up",
        "--alert",
        str(QUICKSTART / "alerts.json"),
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.count("matched demo/disk-filling-up") == 2
    assert "not matched: matcher severity=~\"warning|critical\" does not hold ('info')" in out
    assert "title:   HostDiskFillingUp on db-2:9100 (critical)" in out  # rendered, not sent
    assert "Filesystem" in out  # df really ran
    assert "not sent (vigil test)" in out
    assert out.count("execution succeeded") == 2


def test_dry_run_runs_no_command_and_uses_the_given_step_output(tmp_path: Path) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text(
        json.dumps(
            {"labels": {"alertname": "HostDiskFillingUp", "instance": "x", "severity": "critical"}}
        )
    )
    fake = tmp_path / "df.txt"
    fake.write_text("Filesystem  99% /srv-from-file\n")
    run = vigil_test(
        str(QUICKSTART),
        "--workflow",
        "demo/disk-filling-up",
        "--alert",
        str(alert),
        "--dry-run",
        "--step-output",
        f"measure={fake}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'cli measure (attempt 1): ["df", "-P", "--", "/"]' in run.stdout
    assert "/srv-from-file" in run.stdout  # the given output reached the notification
    assert "/dev/" not in run.stdout  # df did not run
    assert "notify escalate -> console (not sent)" in run.stdout


def test_a_label_that_looks_like_an_option_stays_an_operand(tmp_path: Path) -> None:
    """The quickstart's `--` keeps `mountpoint=--version` from becoming df's option."""
    alert = tmp_path / "alert.json"
    labels = {"alertname": "HostDiskFillingUp", "instance": "x", "severity": "warning"}
    alert.write_text(json.dumps({"labels": {**labels, "mountpoint": "--version"}}))
    run = vigil_test(str(QUICKSTART), "--workflow", "demo/disk-filling-up", "--alert", str(alert))
    assert 'cli measure (attempt 1): ["df", "-P", "--", "--version"]' in run.stdout
    assert "coreutils" not in run.stdout  # df did not print its version
    assert "df: --version: No such file or directory" in run.stdout  # an operand: no such path
    assert run.returncode != 0


def test_a_failing_execution_exits_non_zero(tmp_path: Path) -> None:
    definitions = tmp_path / "defs.yaml"
    definitions.write_text(
        """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: fails, namespace: ops}
spec:
  steps:
    - name: boom
      cli: {command: ["sh", "-c", "echo broken >&2; exit 4"]}
"""
    )
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "X"}}))
    run = vigil_test(str(definitions), "--workflow", "ops/fails", "--alert", str(alert))
    assert run.returncode == 1
    assert "execution failed: step boom failed: exited with code 4" in run.stdout


def test_bad_arguments_are_reported_clearly(tmp_path: Path) -> None:
    missing = vigil_test(
        str(QUICKSTART), "--workflow", "demo/nope", "--alert", str(QUICKSTART / "alerts.json")
    )
    assert missing.returncode == 2
    assert "workflow demo/nope: no such Workflow" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = vigil_test(str(QUICKSTART), "--workflow", "demo/disk-filling-up", "--alert", str(garbage))
    assert bad.returncode == 2
    assert "cannot read a JSON alert" in bad.stderr
    no_file = vigil_test(
        str(QUICKSTART),
        "--workflow",
        "demo/disk-filling-up",
        "--alert",
        str(QUICKSTART / "alerts.json"),
        "--dry-run",
        "--step-output",
        "measure",
    )
    assert no_file.returncode == 2
    assert "must be NAME=FILE" in no_file.stderr


INVESTIGATION = """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: crashloop, namespace: ops}
spec:
  steps:
    - name: investigate
      agent: {goal: "Why does {{ alert.labels.pod }} crash?", tools: [dns]}
    - name: tell
      condition: 'steps.investigate.output.rootCause != ""'
"""


def test_an_agent_step_asks_the_configured_model(tmp_path: Path) -> None:
    definitions = tmp_path / "defs.yaml"
    definitions.write_text(INVESTIGATION)
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "CrashLoop", "pod": "api-7f9c"}}))
    finding = {
        "summary": "api-7f9c runs out of memory",
        "rootCause": "memory limit too low",
        "evidence": [],
        "recommendations": ["raise it"],
        "confidence": 0.6,
    }
    with serving("/v1/chat/completions") as model:
        model.answer(openai_reply(json.dumps(finding)))
        run = vigil_test(
            str(definitions),
            "--workflow",
            "ops/crashloop",
            "--alert",
            str(alert),
            env={"VIGIL_EXECUTOR_AGENT_BASE_URL": f"{model.base_url}/v1"},
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "agent investigate (attempt 1): Why does api-7f9c crash?" in run.stdout
    assert "memory limit too low" in run.stdout
    assert "execution succeeded" in run.stdout
    (asked,) = model.requests
    assert [t["function"]["name"] for t in asked["tools"]] == ["dns"]


def test_an_agent_step_without_a_model_fails_saying_how_to_configure_one(tmp_path: Path) -> None:
    definitions = tmp_path / "defs.yaml"
    definitions.write_text(INVESTIGATION)
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "CrashLoop", "pod": "api-7f9c"}}))
    run = vigil_test(str(definitions), "--workflow", "ops/crashloop", "--alert", str(alert))
    assert run.returncode == 1
    assert "VIGIL_EXECUTOR_AGENT_BASE_URL" in run.stdout
