"""A MongoDB-compatible wire server (mongoeco) as a process of its own, for the store suites.

`python -m tests.support.mongoeco_server --port N [--sqlite PATH]` serves the MongoDB wire
protocol on 127.0.0.1:N until SIGTERM or SIGINT, backed by mongoeco's in-memory engine or,
with `--sqlite`, its SQLite engine. `tests.support.mongo` starts it as a subprocess so that
the real PyMongo driver talks to it over TCP, exactly as it talks to a MongoDB server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(*, host: str, port: int, sqlite: str | None) -> None:
    engine = SQLiteEngine(sqlite) if sqlite is not None else MemoryEngine()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncMongoEcoProxyServer(engine=engine, host=host, port=port) as server:
        address = server.address
        # One line on stdout for whoever started us; readiness is still a real ping.
        print(f"mongoeco serving on {address.host}:{address.port}", flush=True)  # noqa: T201
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--sqlite", default=None, help="SQLite file (default: in memory)")
    args = parser.parse_args(argv)
    asyncio.run(serve(host=args.host, port=args.port, sqlite=args.sqlite))


if __name__ == "__main__":
    main(sys.argv[1:])
