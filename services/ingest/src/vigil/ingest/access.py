"""Who may call the API: bearer tokens with the scopes `read` and `operate`.

Every path is guarded unless it is listed as open: webhooks (`/hooks/*`, governed by each
Source's own auth), the probes (`/healthz`, `/readyz`), the API's own description
(`/docs`, `/redoc`, `/openapi.json`), and the console's sign-in page and assets (`/login`,
`/static/*`). A GET or HEAD needs `read`; anything else needs `operate`, so an endpoint
added later is guarded without anyone remembering to guard it. `operate` implies `read`:
whoever may cancel an execution may look at it.

The API takes the token from `Authorization: Bearer`. The console (every path outside
`/api/`, `/hooks/` and the ops endpoints) also takes it from the cookie its sign-in page
sets (HttpOnly, SameSite=Strict); a console page asked for without a valid token redirects
to the sign-in page. A form the console posts on the cookie's strength carries a token
derived from the cookie's (`csrf_token`), which another site cannot compute.

Tokens come from a tokens file, one per line (`<token> [scope,scope]`, no scopes meaning
both, `#` comments), re-read when it changes so tokens rotate without a restart, and from
`VIGIL_API_TOKEN` (both scopes). Tokens are compared by their SHA-256 digests in constant
time, and every entry is compared, so timing says nothing about which one matched.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, get_args
from urllib.parse import urlencode

import structlog
from starlette import types as asgi

from vigil.common.errors import InvalidInput
from vigil.ingest.rejections import Reason, count_rejection

log = structlog.get_logger(__name__)

type ApiScope = Literal["read", "operate"]
SCOPES: frozenset[ApiScope] = frozenset(get_args(ApiScope.__value__))

OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/login",
    }
)
OPEN_PREFIXES = ("/hooks/", "/static/")
# Not the console: the API, the webhooks and the ops endpoints answer JSON (or metrics).
NOT_CONSOLE_PREFIXES = ("/api/", "/hooks/", "/docs", "/redoc", "/openapi.json")
NOT_CONSOLE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CONSOLE_COOKIE = "vigil_token"
CSRF_FIELD = "csrf"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class TokenTable:
    """Token digests and the scopes each grants."""

    entries: tuple[tuple[bytes, frozenset[ApiScope]], ...] = ()

    def scopes(self, token: str) -> frozenset[ApiScope] | None:
        wanted = _digest(token)
        found: frozenset[ApiScope] | None = None
        for digest, scopes in self.entries:
            if hmac.compare_digest(digest, wanted):
                found = scopes
        return found

    def __len__(self) -> int:
        return len(self.entries)

    def __add__(self, other: TokenTable) -> TokenTable:
        return TokenTable(self.entries + other.entries)

    @classmethod
    def of(cls, token: str, scopes: frozenset[ApiScope] = SCOPES) -> TokenTable:
        return cls(((_digest(token), scopes),))


def parse_tokens(text: str, *, origin: str) -> TokenTable:
    """Read a tokens file; an unknown scope or a malformed line names its line number."""
    entries: list[tuple[bytes, frozenset[ApiScope]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        token, *rest = line.split()
        if len(rest) > 1:
            msg = f"{origin}:{number}: expected `<token> [scope,scope]`, got {len(rest) + 1} words"
            raise InvalidInput(msg)
        names = [s for s in rest[0].split(",") if s] if rest else sorted(SCOPES)
        unknown = sorted(set(names) - SCOPES)
        if unknown:
            msg = f"{origin}:{number}: unknown scope {', '.join(unknown)} (known: operate, read)"
            raise InvalidInput(msg)
        if len(token) < 16:
            msg = f"{origin}:{number}: a token must be at least 16 characters"
            raise InvalidInput(msg)
        scopes = frozenset(name for name in SCOPES if name in names)
        entries.append((_digest(token), scopes))
    return TokenTable(tuple(entries))


def read_tokens_file(path: Path) -> TokenTable:
    """The tokens of `path`; a missing or unreadable file is InvalidInput naming it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"API tokens file {path}: {exc.strerror}"
        raise InvalidInput(msg) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("api_tokens_file_readable_by_others", path=str(path), mode=oct(mode & 0o777))
    return parse_tokens(text, origin=str(path))


class TokenSource(Protocol):
    def scopes(self, token: str) -> frozenset[ApiScope] | None: ...


@dataclass(slots=True, kw_only=True)
class TokenFile:
    """The tokens of a file plus fixed ones, re-read whenever the file changes.

    A file that becomes unreadable or malformed keeps the tokens last read (and logs why):
    a half-written rotation must not lock every operator out, nor let everyone in.
    """

    path: Path
    fixed: TokenTable = field(default_factory=TokenTable)
    poll_seconds: float = 1.0
    last_error: str | None = None
    _table: TokenTable = field(default_factory=TokenTable)
    _seen: tuple[int, int, int] | None = None

    def load(self) -> None:
        """First read, at start-up: a bad file stops the service here."""
        self._seen = self._signature()
        self._table = read_tokens_file(self.path)

    def scopes(self, token: str) -> frozenset[ApiScope] | None:
        return (self.fixed + self._table).scopes(token)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            signature = await asyncio.to_thread(self._signature)
            if signature == self._seen:
                continue
            self._seen = signature
            try:
                table = await asyncio.to_thread(read_tokens_file, self.path)
            except InvalidInput as exc:
                self.last_error = str(exc)
                log.error("api_tokens_not_reloaded", reason=str(exc), kept=len(self._table))
                continue
            self._table, self.last_error = table, None
            log.info("api_tokens_reloaded", path=str(self.path), tokens=len(table))


@dataclass(frozen=True, slots=True)
class FixedTokens:
    table: TokenTable

    def scopes(self, token: str) -> frozenset[ApiScope] | None:
        return self.table.scopes(token)


def required_scope(method: str, path: str) -> ApiScope | None:
    """The scope a request needs; None for the open paths."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    return "read" if method in ("GET", "HEAD") else "operate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    status: int
    reason: Reason
    message: str


def refusal(token: str | None, needed: ApiScope, tokens: TokenSource) -> Refusal | None:
    """None when `token` grants `needed`; else the status, reason and sentence to answer."""
    if token is None:
        return Refusal(
            status=401,
            reason="no_token",
            message=f"this endpoint needs a bearer token with scope {needed}: "
            "send `Authorization: Bearer <token>`",
        )
    granted = tokens.scopes(token)
    if granted is None:
        return Refusal(
            status=401,
            reason="bad_token",
            message="the bearer token is not valid (unknown, revoked or rotated)",
        )
    if needed in granted or (needed == "read" and "operate" in granted):
        return None
    return Refusal(
        status=403,
        reason="missing_scope",
        message=f"the bearer token lacks scope {needed} (it has: {', '.join(sorted(granted))})",
    )


def is_console(path: str) -> bool:
    """Whether `path` is the console's (HTML pages, a cookie may carry the token)."""
    return not (path in NOT_CONSOLE_PATHS or path.startswith(NOT_CONSOLE_PREFIXES))


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def cookie_value(token: str) -> str:
    """The cookie that carries `token`: base64url without padding, so that any token is a
    valid cookie value that needs no quoting."""
    return base64.urlsafe_b64encode(token.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def cookie_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token in the console's cookie, if the request carries one that decodes."""
    for name, value in headers:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, carried = part.strip().partition("=")
                if key == CONSOLE_COOKIE and carried:
                    try:
                        padded = carried + "=" * (-len(carried) % 4)
                        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
                    except (ValueError, UnicodeDecodeError):
                        return None
    return None


def csrf_token(token: str) -> str:
    """What a console form posts beside the cookie: derived from the token, so a page of
    another site, which cannot read the cookie, cannot fill it in."""
    return hmac.new(token.encode(), b"vigil console form", hashlib.sha256).hexdigest()[:32]


def console_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token a console request shows: a bearer header first, else the cookie."""
    return bearer_token(headers) or cookie_token(headers)


class RequireTokens:
    """ASGI middleware: every request outside the open paths shows a token with its scope."""

    def __init__(self, app: asgi.ASGIApp, *, tokens: TokenSource) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        needed = required_scope(scope["method"], path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        console = is_console(path)
        token = console_token(scope["headers"]) if console else bearer_token(scope["headers"])
        refused = refusal(token, needed, self.tokens)
        if refused is None:
            await self.app(scope, receive, send)
            return
        count_rejection(refused.reason)
        if console and scope["method"] in ("GET", "HEAD") and refused.status == 401:
            await _to_sign_in(scope, send)
            return
        body = json.dumps({"error": refused.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if refused.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="vigil"'))
        await send({"type": "http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _to_sign_in(scope: asgi.Scope, send: asgi.Send) -> None:
    """A console page without a valid token: 303 to the sign-in page, which comes back."""
    target = scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    location = "/login?" + urlencode({"next": target})
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
