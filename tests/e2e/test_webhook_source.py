"""`vigil up` with the GitHub example (`examples/sources/github-events.yaml`): a signed
`workflow_run` failure becomes an alert that runs the example's workflow; an unsigned or
wrongly signed body is a 401 and runs nothing. The signing secret is read from the Secret
in the definitions folder, as a user would write it."""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path

import httpx
import pytest

from tests.support.platform import running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "sources" / "github-events.yaml"
BODY = (
    ROOT / "services" / "ingest" / "tests" / "unit" / "webhook_corpus" / "github-workflow-run.json"
)
SECRET = b"change-me-github-webhook-secret"  # the example's Secret


def test_a_signed_github_workflow_run_failure_runs_the_example_workflow(tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "github-events.yaml")
    body = BODY.read_bytes()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    with running_platform(definitions=folder, data_dir=tmp_path / "data") as platform:

        def hook(headers: dict[str, str], content: bytes = body) -> httpx.Response:
            return httpx.post(
                f"{platform.url}/hooks/ci/github",
                content=content,
                headers={"Content-Type": "application/json", **headers},
                timeout=10,
            )

        unsigned = hook({})
        assert unsigned.status_code == 401, unsigned.text
        assert "missing signature header X-Hub-Signature-256" in unsigned.json()["error"]
        # Another workflow's failure (another alert, were it stored) under the real signature.
        tampered = body.replace(b'"name": "CI"', b'"name": "Deploy"', 1)
        assert tampered != body
        forged = hook({"X-Hub-Signature-256": signature}, tampered)
        assert forged.status_code == 401, forged.text
        assert "bad signature" in forged.json()["error"]

        signed = hook({"X-Hub-Signature-256": signature, "X-GitHub-Event": "workflow_run"})
        assert signed.status_code == 200, signed.text
        assert signed.json() == {"accepted": 1, "new": 1}

        execution = platform.newest_finished(namespace="ci", workflow="main-is-red")
        assert execution["state"] == "succeeded", execution
        executions = platform.api.get("/api/v1/executions", params={"namespace": "ci"}).json()
        assert len(executions["items"]) == 1  # the refused bodies ran nothing
        assert SECRET.decode() not in platform.logs()
