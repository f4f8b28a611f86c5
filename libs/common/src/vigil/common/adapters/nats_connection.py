"""One connection to NATS, to a single server or to a cluster given as a list of URLs.

`VIGIL_NATS_URL` may name every node of a cluster (`nats://a:4222,nats://b:4222,…`). The
first connection tries them in random order and has a deadline (a service that cannot
reach NATS at start exits and is restarted); once connected, the client reconnects forever:
when its server goes away it moves on to the next one of the list, or of those the cluster
announces, waiting `RECONNECT_WAIT_SECONDS` before trying a server it tried last round.
Publishes made meanwhile are held and sent after the reconnect; what waits for an answer
times out on its own deadline (the caller's TransientError). Used by `JetStreamBus.connect`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import nats.errors
import structlog
from nats.aio.client import Client

from vigil.common.adapters.nats_errors import NATS_ERRORS
from vigil.common.bus_permissions import inbox_prefix
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.settings import BusCredentials, redacted_url

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0  # the first connection, across every server of the list
SERVER_CONNECT_TIMEOUT_SECONDS = 3  # one server's TCP connect and handshake
RECONNECT_WAIT_SECONDS = 0.5  # before trying again a server tried in the previous round
_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*NATS_ERRORS, OSError)


def server_list(url: str) -> list[str]:
    """The servers of a comma-separated `VIGIL_NATS_URL`, blanks around commas ignored.

    Raises InvalidInput naming the entry (without its password) that is not a NATS URL.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        msg = "VIGIL_NATS_URL is empty: give nats://host:port, or several separated by commas"
        raise InvalidInput(msg)
    for server in servers:
        split = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            split.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            msg = f"VIGIL_NATS_URL entry {redacted_url(server)!r} has no valid port"
            raise InvalidInput(msg) from exc
        if split.scheme not in _SCHEMES or not split.hostname:
            msg = (
                f"VIGIL_NATS_URL entry {redacted_url(server)!r} is not a NATS URL "
                "(nats://host:port)"
            )
            raise InvalidInput(msg)
    return servers


async def connect_client(
    url: str, *, name: str, credentials: BusCredentials | None = None
) -> Client:
    """A client connected to one of the servers of `url`, as the user of `credentials`.

    With a user, every reply (publish acks, API answers, pulled messages) comes to its own
    inbox prefix, the one its permissions let it subscribe to. A server that refuses the
    credentials fails the first connection at once, naming the user.
    """
    servers = server_list(url)
    # nats.py's annotation says int; the wait is slept, and half a second is what we want.
    options: dict[str, Any] = {"reconnect_time_wait": RECONNECT_WAIT_SECONDS}
    if credentials is not None:
        options |= {
            "user": credentials.user,
            "password": credentials.password.get_secret_value(),
            "inbox_prefix": inbox_prefix(credentials.user),
        }
    where = redacted_url(",".join(servers))
    client = Client()
    refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if not client.is_connected and not refused.done() and _is_refusal(exc):
            refused.set_result(exc)
        log.warning("nats_error", error=str(exc))

    async def on_disconnected() -> None:
        log.warning("nats_disconnected")

    async def on_reconnected() -> None:
        server = client.connected_url
        log.info("nats_reconnected", server=redacted_url(server.geturl()) if server else None)

    connecting = asyncio.ensure_future(
        client.connect(
            servers=servers,
            name=name,
            max_reconnect_attempts=-1,  # forever, once connected
            connect_timeout=SERVER_CONNECT_TIMEOUT_SECONDS,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            **options,
        )
    )
    first: set[asyncio.Future[Any]] = {connecting, refused}
    await asyncio.wait(first, timeout=CONNECT_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done():
        try:
            connecting.result()
        except _CONNECT_ERRORS as exc:
            msg = f"cannot connect to NATS at {where}: {exc}"
            raise TransientError(msg) from exc
        return client
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, *_CONNECT_ERRORS):
        await connecting
    with contextlib.suppress(*NATS_ERRORS):
        await client.close()
    if refused.done():
        who = f"as user {credentials.user}" if credentials else "without credentials"
        msg = f"NATS at {where} refused the connection {who}: authorization violation"
        raise TransientError(msg) from refused.result()
    msg = f"cannot connect to NATS at {where} within {CONNECT_TIMEOUT_SECONDS:g}s"
    raise TransientError(msg)


def _is_refusal(exc: BaseException) -> bool:
    """The server refused the credentials (nats.py reports it as a plain error at first)."""
    return isinstance(exc, nats.errors.AuthorizationError) or (
        "authorization violation" in str(exc).lower()
    )
