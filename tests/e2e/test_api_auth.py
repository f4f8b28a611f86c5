"""`vigil up` guards its API: a token generated on first start and kept (mode 0600) in the
data dir, 401/403 without it, webhooks still governed by their Source (a Source's bearer
token is read from its Secret file at each request: a rotation needs no restart);
`--no-auth` opens the API on loopback only, with a warning, and refuses any other
address."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.definitions import ECHO_HELLO, alertmanager_body, firing_alert, write_definitions
from tests.support.platform import running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DEFINITIONS = ECHO_HELLO


def _definitions(tmp_path: Path) -> Path:
    folder = tmp_path / "definitions"
    write_definitions(folder, DEFINITIONS)
    return folder


def test_the_api_needs_the_token_vigil_up_generated_and_keeps(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_platform(definitions=_definitions(tmp_path), data_dir=data_dir) as platform:
        token_file = data_dir / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        # The harness made the folder with the default umask: vigil up closed it to others.
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert "data_dir_made_private" in platform.logs()
        token = platform.token
        assert token is not None
        assert token.startswith("vigil_")

        anonymous = httpx.post(
            f"{platform.url}/api/v1/workflows/ops/hello/run",
            json={"labels": {"alertname": "Manual"}},
            timeout=5,
        )
        assert anonymous.status_code == 401
        assert "needs a bearer token with scope operate" in anonymous.json()["error"]
        assert httpx.get(f"{platform.url}/api/v1/executions", timeout=5).status_code == 401
        assert httpx.get(f"{platform.url}/metrics", timeout=5).status_code == 401
        assert httpx.get(f"{platform.url}/readyz", timeout=5).status_code == 200

        hook = httpx.post(
            f"{platform.url}/hooks/ops/am",
            json=alertmanager_body([firing_alert("Hello")]),
            timeout=10,
        )
        assert hook.status_code == 200, hook.text  # the Source is open: no API token needed
        run = platform.api.post(
            "/api/v1/workflows/ops/hello/run", json={"labels": {"alertname": "Manual"}}, timeout=5
        )
        assert run.status_code == 202, run.text
        assert "export VIGIL_API_TOKEN=$(head -n1" in platform.logs()
        assert token not in platform.logs()

        # A read-only token added to the file works without a restart.
        reader = "reader-token-for-the-dashboard"
        token_file.write_text(f"{token}\n{reader} read\n")
        as_reader = {"Authorization": f"Bearer {reader}"}
        deadline = time.monotonic() + 30
        while (
            seen := platform.api.get("/api/v1/executions", headers=as_reader)
        ).status_code == 401:
            assert time.monotonic() < deadline, "the new token was not read within 30 s"
            time.sleep(0.05)
        assert seen.status_code == 200, seen.text
        cancel = platform.api.post("/api/v1/executions/x/cancel", headers=as_reader)
        assert cancel.status_code == 403


GUARDED_SOURCE = """---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: guarded, namespace: ops}
spec:
  type: alertmanager
  auth: {bearerTokenSecretRef: {name: ingest-token, key: token}}
"""


def _token_secret(token: str) -> str:
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: ingest-token, namespace: ops}}
stringData: {{token: {token}}}
"""


def test_a_source_reads_its_bearer_token_from_the_secret_file_at_each_request(
    tmp_path: Path,
) -> None:
    folder = write_definitions(tmp_path / "definitions", DEFINITIONS, GUARDED_SOURCE)
    secret = folder / "token.yaml"
    secret.write_text(_token_secret("first-source-token"), encoding="utf-8")
    with running_platform(definitions=folder, data_dir=tmp_path / "data") as platform:

        def hook(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = httpx.post(
                f"{platform.url}/hooks/ops/guarded",
                json=alertmanager_body([firing_alert("Guarded")]),
                headers=headers,
                timeout=10,
            )
            return answer.status_code

        assert [hook("first-source-token"), hook("wrong-token"), hook(None)] == [200, 401, 401]

        # Rotated as an editor (or a mounted Secret's update) does: a new file renamed over.
        swap = folder / ".token.yaml.swap"
        swap.write_text(_token_secret("second-source-token"), encoding="utf-8")
        swap.replace(secret)

        assert [hook("second-source-token"), hook("first-source-token")] == [200, 401]
        logs = platform.logs()
        assert "first-source-token" not in logs
        assert "second-source-token" not in logs


def test_no_auth_opens_the_api_on_loopback_and_warns(tmp_path: Path) -> None:
    with running_platform(
        definitions=_definitions(tmp_path), data_dir=tmp_path / "data", extra_args=["--no-auth"]
    ) as platform:
        assert httpx.get(f"{platform.url}/api/v1/executions", timeout=5).status_code == 200
        assert not (tmp_path / "data" / "api-token").exists()
        logs = platform.logs()
        assert "api_auth_disabled" in logs
        assert "anyone who can reach this port" in logs


def test_no_auth_off_loopback_is_refused_before_anything_starts(tmp_path: Path) -> None:
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "up",
            "--definitions",
            str(_definitions(tmp_path)),
            "--data-dir",
            str(tmp_path / "data"),
            "--http-host",
            "0.0.0.0",
            "--no-auth",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "--no-auth serves the API to anyone: bind 127.0.0.1, not 0.0.0.0" in (
        refused.stdout + refused.stderr
    )
