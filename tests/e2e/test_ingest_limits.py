"""`vigil up`'s ingest against hostile clients, with real NATS and real sockets: a body that
can never be accepted (a 1 MB label, an alert over NATS's max_payload) is a 413 naming the
alert, stores nothing and leaves ingest connected; a client slow with its headers or its
body is answered 408 and closed within the configured deadline, on a webhook and on an
API endpoint alike; and `/metrics` counts each refusal by reason. The deadlines are set
small through the environment, as an operator would set them."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.definitions import ECHO_HELLO, alertmanager_body, firing_alert, write_definitions
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DEADLINE_SECONDS = 1.0
CLOSE_WITHIN_SECONDS = 30.0  # the failure this guards against is "never"
DEFINITIONS = ECHO_HELLO


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(CLOSE_WITHIN_SECONDS)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed with bytes of ours unread: closed all the same
    return bytes(received)


def slow_client_answer(platform: Platform, request: bytes) -> tuple[bytes, float]:
    """Send `request` (incomplete) and wait for ingest to answer and close; how long it took."""
    started = time.monotonic()  # before connecting: ingest's deadline starts on accepting
    with socket.create_connection(("127.0.0.1", platform.http_port), timeout=5) as sock:
        sock.sendall(request)
        answer = until_closed(sock)
        return answer, time.monotonic() - started


def rejected(platform: Platform) -> dict[str, float]:
    text = platform.api.get("/metrics", timeout=5).text
    found = re.findall(r'^vigil_ingest_rejected_total\{reason="([a-z_]+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def alerts_received(platform: Platform) -> int:
    stats = platform.api.get("/api/v1/stats", timeout=5).json()
    return int(stats["alerts"]["received"])


def test_ingest_refuses_what_can_never_be_accepted_and_clients_that_hold_their_socket(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "definitions"
    write_definitions(folder, DEFINITIONS)
    env = {
        "VIGIL_INGEST_HEADER_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
        "VIGIL_INGEST_BODY_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
    }
    with running_platform(definitions=folder, data_dir=tmp_path / "data", env=env) as platform:
        hook = f"{platform.url}/hooks/ops/am"

        huge_label = httpx.post(
            hook,
            json=alertmanager_body(
                [firing_alert("Fine"), firing_alert("Huge", description="x" * 1_000_000)]
            ),
            timeout=30,
        )
        huge_url = alertmanager_body([firing_alert("Big")])
        huge_url["alerts"][0]["generatorURL"] = "http://prometheus/graph?g0.expr=" + "x" * 1_200_000
        over_max_payload = httpx.post(hook, json=huge_url, timeout=30)

        assert huge_label.status_code == 413, huge_label.text
        assert huge_label.json()["error"].startswith(
            "alerts[1].labels.description: the value is 1000000 bytes, over the limit of "
            "16384 bytes"
        )
        assert over_max_payload.status_code == 413, over_max_payload.text
        assert over_max_payload.json()["error"].startswith("alerts[0] is ")
        assert "over the bus's largest message (1048576 bytes)" in over_max_payload.json()["error"]
        assert alerts_received(platform) == 0, "nothing of a refused body is stored"
        accepted = httpx.post(hook, json=alertmanager_body([firing_alert("Fine")]), timeout=30)
        assert accepted.status_code == 200, "ingest stays connected to NATS"

        slow_head, head_took = slow_client_answer(
            platform, b"POST /hooks/ops/am HTTP/1.1\r\nHost: vigil\r\nContent-Type: appl"
        )
        slow_hook_body, _ = slow_client_answer(
            platform,
            b"POST /hooks/ops/am HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"alerts": [',
        )
        token = (platform.token or "").encode()
        slow_api_body, _ = slow_client_answer(
            platform,
            b"POST /api/v1/workflows/ops/hello/run HTTP/1.1\r\nHost: vigil\r\n"
            b"Authorization: Bearer " + token + b"\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"labels": ',
        )
        counted = rejected(platform)

    assert slow_head.startswith(b"HTTP/1.1 408 "), slow_head[:200]
    assert b'{"error": "request headers not received within 1 seconds"}' in slow_head
    assert head_took >= DEADLINE_SECONDS - 0.01  # the timer's own resolution
    for answer in (slow_hook_body, slow_api_body):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert answer.endswith(b'{"error": "request body not received within 1 seconds"}')
    assert counted["label_too_large"] == 1
    assert counted["over_max_payload"] == 1
    assert counted["header_timeout"] >= 1
    assert counted["body_timeout"] == 2
