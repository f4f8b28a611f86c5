"""Ingest's API fuzzed from its own OpenAPI document (schemathesis), over real HTTP against
`vigil up`, with API tokens and with `--no-auth`: every operation, with requests that fit
the schema and requests that do not. No request gets a 5xx; every refusal is the API's
JSON error naming the problem; and every alert a webhook answer accepted is stored.

The budget is fixed and the generation derandomized, so `make test` runs the same cases
every time; `make test-slow` runs the same properties with many more examples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from tests.support.definitions import alertmanager_source, log_sink, workflow, write_definitions
from tests.support.platform import Platform, running_platform
from vigil.common.alertmanager import WebhookPayload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

type Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = 15  # per operation and generation mode, in `make test`
SLOW_EXAMPLES = 200
# Operations whose path parameters the fuzz fixes to what exists, so cases reach the
# handler instead of a 404 (an unknown Source or workflow is covered by the API tests).
REAL_PATH_PARAMETERS = {
    "/hooks/{namespace}/{source}": {"namespace": "ops", "source": "am"},
    "/api/v1/workflows/{namespace}/{name}/run": {"namespace": "ops", "name": "quick"},
}


@dataclass(slots=True)
class Accepted:
    """The alerts webhook answers accepted (by fingerprint), to check none was lost."""

    fingerprints: set[str] = field(default_factory=set)
    answers: int = 0


@pytest.fixture(scope="module", params=["tokens", "no-auth"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    definitions = write_definitions(
        tmp_path_factory.mktemp("definitions"),
        alertmanager_source("ops"),
        log_sink("ops"),
        workflow(
            "quick",
            "- {name: run, cli: {command: ['true'], timeout: 30s}}",
            matcher='alertname=~".+"',
        ),
    )
    extra = ["--no-auth"] if request.param == "no-auth" else []
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data"), extra_args=extra
    ) as running:
        yield running


def operations(platform: Platform) -> list[Operation]:
    schema = schemathesis.openapi.from_url(f"{platform.url}/openapi.json")
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        found.append(result.ok())
    assert len(found) >= 10, [op.label for op in found]  # the whole API, not a fragment
    return found


def fuzz(
    platform: Platform,
    operation: Operation,
    mode: GenerationMode,
    accepted: Accepted,
    *,
    examples: int,
    headers: dict[str, str],
) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=REAL_PATH_PARAMETERS.get(operation.path)
    )

    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=platform.url, headers=headers, timeout=30)
        what = (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
        assert response.status_code < 500, what
        if response.status_code >= 400:
            content_type = response.headers.get("content-type", [""])[0]
            assert content_type.startswith("application/json"), what
            error = response.json().get("error")
            assert isinstance(error, str), what
            assert error, what
        if operation.path.startswith("/hooks/") and response.status_code == 200:
            payload = WebhookPayload.model_validate(case.body)
            assert response.json()["accepted"] == len(payload.alerts), what
            accepted.fingerprints.update(alert.identity() for alert in payload.alerts)
            accepted.answers += 1

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        # An operation without parameters or body has nothing a negative case could break.
        if mode is GenerationMode.POSITIVE:
            raise


def stored_fingerprints(platform: Platform) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params = {"namespace": "ops", "source": "am", "limit": "500"}
        page = platform.api.get(
            "/api/v1/alerts",
            params={**params, **({"cursor": cursor} if cursor else {})},
            timeout=10,
        ).json()
        found.update(alert["fingerprint"] for alert in page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return found


def run_fuzz(platform: Platform, examples: int) -> None:
    accepted = Accepted()
    callers = [platform.headers]
    if platform.token is not None:
        callers.append({})  # no token: refused (401) by every guarded operation, never a 5xx
    for operation in operations(platform):
        for headers in callers:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(platform, operation, mode, accepted, examples=examples, headers=headers)
    assert accepted.answers  # webhooks were accepted, so the check below means something
    # Nothing accepted is lost: every alert a webhook answer accepted gets stored.
    deadline = time.monotonic() + 60
    while missing := accepted.fingerprints - stored_fingerprints(platform):
        assert time.monotonic() < deadline, f"accepted, never stored: {sorted(missing)}"
        time.sleep(0.2)
    assert httpx.get(f"{platform.url}/readyz", timeout=5).status_code == 200


def test_no_request_from_the_openapi_document_gets_a_5xx_or_loses_an_alert(
    platform: Platform,
) -> None:
    run_fuzz(platform, EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_same_with_a_long_budget(platform: Platform) -> None:
    run_fuzz(platform, SLOW_EXAMPLES)
