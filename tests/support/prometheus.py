"""A real Prometheus server (Debian's `prometheus` package) scraping given targets every
second, on a free loopback port, with its data in a temporary folder; and its HTTP query API.

`make prometheus` (run by `.ci/run`) installs the package where apt can; a test that needs
the binary and does not find it skips, naming the command that would install it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.nats import free_port

READY_TIMEOUT_SECONDS = 30.0
CANDIDATES = ("/usr/bin/prometheus", "/usr/local/bin/prometheus")


def prometheus_binary() -> str:
    """The Prometheus server's path; skips the test when there is none."""
    found = shutil.which("prometheus") or next(
        (path for path in CANDIDATES if Path(path).exists()), None
    )
    if found is None:
        pytest.skip(
            "no prometheus binary (install Debian's package: `make prometheus`, as root with apt)"
        )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeTarget:
    job: str
    url: str  # http://host:port/metrics
    bearer_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Prometheus:
    url: str
    log_path: Path

    def query(self, expr: str) -> httpx.Response:
        """An instant query, now; the raw answer (a 400 says the expression did not parse)."""
        return httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)

    def samples(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer.status_code == 200, f"{expr}: {answer.status_code} {answer.text}"
        body: dict[str, Any] = answer.json()
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def scrape_config(targets: list[ScrapeTarget]) -> dict[str, Any]:
    jobs = []
    for target in targets:
        scheme, rest = target.url.split("://", 1)
        address, _, path = rest.partition("/")
        job: dict[str, Any] = {
            "job_name": target.job,
            "scheme": scheme,
            "metrics_path": f"/{path}",
            "static_configs": [{"targets": [address]}],
        }
        if target.bearer_token is not None:
            job["authorization"] = {"type": "Bearer", "credentials": target.bearer_token}
        jobs.append(job)
    return {
        # rate() needs two samples in its window: scrape every second.
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    }


@contextlib.contextmanager
def running_prometheus(folder: Path, targets: list[ScrapeTarget]) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets)), encoding="utf-8")
    port = free_port()
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                msg = f"prometheus exited with {process.returncode}:\n{prometheus.logs()}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                msg = f"prometheus not ready in {READY_TIMEOUT_SECONDS}s:\n{prometheus.logs()}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
