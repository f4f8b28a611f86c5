"""`python -m bench.receiver PORT`: a webhook receiver for the sink benchmark, in a process
of its own so that its CPU is not the sink's.

A minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, `Content-Length` bodies): every POST
is answered 200 and counted with its `Idempotency-Key`; `GET /stats` answers
`{"posts": n, "keys": distinct keys, "connections": n}` so the benchmark sees repeats as
well as losses, and how many connections the sink opened.
"""

from __future__ import annotations

import asyncio
import json
import sys

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class Counts:
    def __init__(self) -> None:
        self.posts = 0
        self.connections = 0
        self.keys: set[str] = set()

    def stats(self) -> bytes:
        body = json.dumps(
            {"posts": self.posts, "keys": len(self.keys), "connections": self.connections}
        ).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body


async def serve_connection(
    counts: Counts, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    counts.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            if method == "POST":
                counts.posts += 1
                counts.keys.add(headers.get("idempotency-key", ""))
                writer.write(OK)
            else:
                writer.write(counts.stats())
            await writer.drain()
    finally:
        writer.close()


async def main(port: int) -> None:
    counts = Counts()
    server = await asyncio.start_server(
        lambda r, w: serve_connection(counts, r, w), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
