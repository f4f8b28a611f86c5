"""API authentication: tokens and scopes, over the real ASGI app with the shipped fakes.

The guard is by default: every route the app has, bar the listed open ones, refuses a
request without a token, so an endpoint added later cannot be left open by omission.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from starlette.routing import Route

from tests.support.definitions import alertmanager_source
from tests.support.documents import make_execution
from vigil.common.errors import InvalidInput
from vigil.common.testing import (
    EPOCH,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import (
    OPEN_PATHS,
    OPEN_PREFIXES,
    FixedTokens,
    TokenFile,
    TokenTable,
    is_console,
    parse_tokens,
    required_scope,
)
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.api import build_app
from vigil.ingest.hooks import Ingest
from vigil.ingest.settings import IngestSettings

READER = "reader-token-0123456789"
OPERATOR = "operator-token-0123456789"
TOKENS = FixedTokens(
    parse_tokens(f"# team tokens\n{READER} read\n\n{OPERATOR} operate\n", origin="t")
)
WORKFLOW = """---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: disk, namespace: ops}
spec:
  steps:
    - name: measure
      cli: {command: ["df"]}
"""


@contextlib.asynccontextmanager
async def api(folder: Path, *, tokens: FixedTokens | None = TOKENS) -> AsyncIterator[Ingest]:
    async with sqlite_store(folder) as store:
        await store.insert_execution(
            make_execution("01RUNNING", at=EPOCH, namespace="ops", workflow="disk", state="running")
        )
        yield Ingest(
            bus=RecordingPublisher(),
            store=store,
            definitions=definitions_view(alertmanager_source("ops") + WORKFLOW),
            sources={"alertmanager": AlertmanagerSource()},
            secrets=MemorySecrets(),
            max_body_bytes=64 * 1024,
        )


def client(ingest: Ingest, *, tokens: FixedTokens | None = TOKENS) -> httpx.AsyncClient:
    app = build_app(ingest, checks={}, tokens=tokens)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_route_but_the_open_ones_refuses_a_request_without_a_token(
    tmp_path: Path,
) -> None:
    async with api(tmp_path) as ingest, client(ingest) as http:
        app = build_app(ingest, checks={}, tokens=TOKENS)
        documented = [
            (method.upper(), path)
            for path, operations in app.openapi()["paths"].items()
            for method in operations
        ]
        undocumented = [
            (method, route.path)
            for route in app.routes
            if isinstance(route, Route)
            for method in sorted(route.methods or ())
        ]
        guarded = [
            (method, path)
            for method, path in documented + undocumented
            if not path.startswith(OPEN_PREFIXES) and path not in OPEN_PATHS
        ]
        assert len(guarded) >= 10, guarded
        assert ("GET", "/metrics") in guarded
        pages = 0
        for method, path in [*guarded, ("GET", "/api/v1/not-a-route")]:
            concrete = path.replace("{", "x").replace("}", "").replace(":path", "")
            answer = await http.request(method, concrete)
            if is_console(path) and method in ("GET", "HEAD"):
                # A console page sends the browser to sign in, and back.
                pages += 1
                assert answer.status_code == 303, (method, path, answer.text)
                assert answer.headers["location"].startswith("/login?next=%2F"), path
                continue
            assert answer.status_code == 401, (method, path, answer.text)
            if method != "HEAD":
                assert "bearer token" in answer.json()["error"]
            assert answer.headers["www-authenticate"] == 'Bearer realm="vigil"'
        assert pages >= 5
        for path in OPEN_PATHS - {"/docs/oauth2-redirect"}:
            assert (await http.get(path)).status_code == 200, path
        for asset in ("/static/console.css", "/static/favicon.svg"):
            assert (await http.get(asset)).status_code == 200, asset


async def test_read_lets_a_token_look_and_operate_lets_it_act(tmp_path: Path) -> None:
    async with api(tmp_path) as ingest, client(ingest) as http:
        listed = await http.get("/api/v1/executions", headers=bearer(READER))
        assert listed.status_code == 200
        assert [e["id"] for e in listed.json()["items"]] == ["01RUNNING"]

        refused = await http.post("/api/v1/executions/01RUNNING/cancel", headers=bearer(READER))
        assert refused.status_code == 403
        assert refused.json() == {"error": "the bearer token lacks scope operate (it has: read)"}
        run = await http.post(
            "/api/v1/workflows/ops/disk/run", json={"labels": {}}, headers=bearer(READER)
        )
        assert run.status_code == 403
        assert ingest.bus.published == []  # type: ignore[attr-defined]

        cancelled = await http.post("/api/v1/executions/01RUNNING/cancel", headers=bearer(OPERATOR))
        assert cancelled.status_code == 202
        seen = await http.get("/api/v1/executions/01RUNNING", headers=bearer(OPERATOR))
        assert seen.status_code == 200  # operate implies read


async def test_a_wrong_token_or_scheme_is_a_401_naming_the_problem(tmp_path: Path) -> None:
    async with api(tmp_path) as ingest, client(ingest) as http:
        unknown = await http.get("/api/v1/stats", headers=bearer("x" * 30))
        assert unknown.status_code == 401
        assert unknown.json() == {
            "error": "the bearer token is not valid (unknown, revoked or rotated)"
        }
        basic = await http.get("/api/v1/stats", headers={"Authorization": f"Basic {READER}"})
        assert basic.status_code == 401
        assert "send `Authorization: Bearer <token>`" in basic.json()["error"]


async def test_webhooks_stay_governed_by_the_source_not_by_api_tokens(tmp_path: Path) -> None:
    async with api(tmp_path) as ingest, client(ingest) as http:
        answer = await http.post("/hooks/ops/am", json={"alerts": []})
        assert answer.status_code != 401, answer.text
        missing = await http.post("/hooks/ops/none", json={"alerts": []})
        assert missing.status_code == 404


async def test_without_tokens_the_api_is_open(tmp_path: Path) -> None:
    async with api(tmp_path) as ingest, client(ingest, tokens=None) as http:
        assert (await http.get("/api/v1/executions")).status_code == 200


async def test_the_openapi_document_names_the_scope_of_each_operation(tmp_path: Path) -> None:
    async with api(tmp_path) as ingest, client(ingest) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/api/v1/executions"]["get"]["security"] == [{"bearer": ["read"]}]
    cancel = paths["/api/v1/executions/{execution_id}/cancel"]["post"]
    assert cancel["security"] == [{"bearer": ["operate"]}]
    assert {"401", "403"} <= set(cancel["responses"])
    assert "security" not in paths["/hooks/{namespace}/{source}"]["post"]


def test_the_scope_follows_the_method_and_the_open_paths() -> None:
    assert required_scope("GET", "/api/v1/executions") == "read"
    assert required_scope("HEAD", "/metrics") == "read"
    assert required_scope("POST", "/api/v1/executions/x/cancel") == "operate"
    assert required_scope("DELETE", "/api/v1/executions/x") == "operate"
    assert required_scope("POST", "/hooks/ops/am") is None
    assert required_scope("GET", "/healthz") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("short read", "t:1: a token must be at least 16 characters"),
        ("# c\n" + "a" * 20 + " admin", "t:2: unknown scope admin (known: operate, read)"),
        ("a" * 20 + " read operate", "t:1: expected `<token> [scope,scope]`, got 3 words"),
    ],
)
def test_a_bad_tokens_file_names_the_line(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_tokens(text, origin="t")
    assert str(caught.value) == problem


def test_a_line_without_scopes_grants_both() -> None:
    table = parse_tokens("a" * 20 + "\n" + "b" * 20 + " read,\n", origin="t")
    assert table.scopes("a" * 20) == frozenset({"read", "operate"})
    assert table.scopes("b" * 20) == frozenset({"read"})
    assert table.scopes("c" * 20) is None


async def wait_until(check: Callable[[], bool], *, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reloaded in time"
        await asyncio.sleep(0.02)


async def test_tokens_rotate_without_a_restart_and_a_broken_file_keeps_the_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    old, new = "old-token-0123456789", "new-token-0123456789"
    path.write_text(f"{old}\n")
    path.chmod(0o600)
    tokens = TokenFile(path=path, fixed=TokenTable.of("fixed-token-0123456789"), poll_seconds=0.01)
    tokens.load()
    watching = asyncio.create_task(tokens.watch())
    try:
        assert tokens.scopes(old) == frozenset({"read", "operate"})
        path.write_text(f"{new} read\n")
        await wait_until(lambda: tokens.scopes(new) is not None)
        assert tokens.scopes(old) is None
        assert tokens.scopes("fixed-token-0123456789") == frozenset({"read", "operate"})

        path.write_text(f"{new} admin\n")  # a bad edit: the last good tokens stay
        await wait_until(lambda: tokens.last_error is not None)
        assert "unknown scope admin" in (tokens.last_error or "")
        assert tokens.scopes(new) == frozenset({"read"})
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


def test_a_missing_tokens_file_stops_the_service_at_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"API tokens file .*/gone: No such file"):
        TokenFile(path=tmp_path / "gone").load()


def test_settings_bind_loopback_by_default_and_refuse_an_open_api_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_API_TOKEN", "t" * 20)
    assert IngestSettings().http_host == "127.0.0.1"
    monkeypatch.delenv("VIGIL_API_TOKEN")
    with pytest.raises(ValidationError, match="the API needs a token and none is configured"):
        IngestSettings()
    monkeypatch.setenv("VIGIL_INGEST_API_AUTH", "none")
    assert IngestSettings().api_auth == "none"
    monkeypatch.setenv("VIGIL_INGEST_HTTP_HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match=r"refusing to serve the API on 0\.0\.0\.0 without"):
        IngestSettings()
    monkeypatch.setenv("VIGIL_INGEST_API_AUTH", "tokens")
    monkeypatch.setenv("VIGIL_API_TOKEN", "t" * 20)
    assert IngestSettings().http_host == "0.0.0.0"
