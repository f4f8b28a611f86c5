"""Three `nats-server` processes as one JetStream cluster on loopback, as the prod overlay
runs them (`jetstream { sync_interval: always }`, server names n1..n3, each its own store).

Each node keeps its client, route and monitoring ports across a restart, so a node killed
with SIGKILL comes back as itself, on its own store, and the services' URL list stays
right. What the cluster thinks is read the way an operator would: the meta leader from the
monitoring endpoint `/jsz`, a stream's leader and replicas from `$JS.API.STREAM.INFO`.
Used by tests/fault/test_nats_cluster.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors

from tests.support.nats import nats_server_binary
from tests.support.process import ServerProcess, free_port, spawn_logged

CLUSTER_NAME = "vigil"
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamPlacement:
    """Where a stream lives now: its leader and every follower with whether it is current."""

    leader: str | None
    followers: dict[str, bool]  # server name -> caught up with the leader

    @property
    def all_current(self) -> bool:
        return self.leader is not None and all(self.followers.values())


@dataclass(kw_only=True)
class ClusterNode:
    name: str
    client_port: int
    route_port: int
    monitor_port: int
    folder: Path
    server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running


@dataclass(kw_only=True)
class NatsCluster:
    nodes: dict[str, ClusterNode] = field(default_factory=dict)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated: `VIGIL_NATS_URL` for the services."""
        return ",".join(node.url for node in self.nodes.values())

    def start(self, name: str) -> None:
        """Start (or restart, on the same ports and store) the node `name`."""
        node = self.nodes[name]
        config = node.folder / "nats.conf"
        config.write_text(self._config(node), encoding="utf-8")
        process, log_file = spawn_logged(
            [str(nats_server_binary()), "--config", str(config)], node.folder / "nats.log"
        )
        node.server = ServerProcess(
            port=node.client_port,
            log_path=node.folder / "nats.log",
            process=process,
            _log_file=log_file,
        )

    def kill(self, name: str) -> None:
        """SIGKILL: no graceful shutdown, the store left as it is."""
        node = self.nodes[name]
        assert node.server is not None, f"{name} was never started"
        node.server.kill()

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.server is not None:
                node.server.stop()

    def _config(self, node: ClusterNode) -> str:
        routes = [
            f"nats-route://127.0.0.1:{other.route_port}"
            for other in self.nodes.values()
            if other.name != node.name
        ]
        store = json.dumps(str(node.folder / "jetstream"))
        return (
            f"server_name: {node.name}\n"
            f'listen: "127.0.0.1:{node.client_port}"\n'
            f'http: "127.0.0.1:{node.monitor_port}"\n'
            # fsync every write before acknowledging it: without it a NATS 2.12 Jepsen
            # analysis found acknowledged writes lost when nodes crash together.
            f"jetstream {{ store_dir: {store}, sync_interval: always }}\n"
            f"cluster {{\n"
            f"  name: {CLUSTER_NAME}\n"
            f'  listen: "127.0.0.1:{node.route_port}"\n'
            f"  routes: [{', '.join(routes)}]\n"
            f"}}\n"
        )

    # --- what the cluster thinks -----------------------------------------------------------

    def meta_leader(self, name: str) -> str | None:
        """The meta leader as node `name` sees it (None while there is none, or it is down)."""
        node = self.nodes[name]
        try:
            answer = httpx.get(f"http://127.0.0.1:{node.monitor_port}/jsz", timeout=2.0)
            leader = answer.json().get("meta_cluster", {}).get("leader")
        except (httpx.HTTPError, ValueError):
            return None
        return str(leader) if leader else None

    def wait_for_meta_leader(self, *, timeout: float) -> str:
        """Wait until every running node sees the same meta leader; return its name."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            seen = {name: self.meta_leader(name) for name, n in self.nodes.items() if n.running}
            leaders = set(seen.values())
            if len(leaders) == 1 and None not in leaders:
                (leader,) = leaders
                assert leader is not None
                return leader
            time.sleep(POLL_SECONDS)
        msg = f"no agreed meta leader within {timeout}s: {seen}\n{self.log_tails()}"
        raise AssertionError(msg)

    def placement(self, stream: str) -> StreamPlacement | None:
        """The stream's leader and followers from `$JS.API.STREAM.INFO` (None: no answer)."""
        info = asyncio.run(self._stream_info(stream))
        if info is None or "cluster" not in info:
            return None
        cluster: dict[str, Any] = info["cluster"]
        followers = {
            str(peer["name"]): bool(peer.get("current")) and not peer.get("offline", False)
            for peer in cluster.get("replicas", [])
        }
        leader = cluster.get("leader")
        return StreamPlacement(leader=str(leader) if leader else None, followers=followers)

    def wait_until_current(self, streams: list[str], *, timeout: float) -> dict[str, str]:
        """Wait until every stream has a leader and all its followers, every node of the
        cluster, are current; return each stream's leader."""
        deadline = time.monotonic() + timeout
        last: dict[str, StreamPlacement | None] = {}
        while time.monotonic() < deadline:
            last = {stream: self.placement(stream) for stream in streams}
            if all(
                p is not None and p.all_current and {p.leader, *p.followers} == set(self.nodes)
                for p in last.values()
            ):
                return {stream: str(p.leader) for stream, p in last.items() if p is not None}
            time.sleep(POLL_SECONDS)
        msg = f"streams not all current on every node within {timeout}s: {last}"
        raise AssertionError(msg)

    async def _stream_info(self, stream: str) -> dict[str, Any] | None:
        running = [node.url for node in self.nodes.values() if node.running]
        with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
            client = await nats.connect(
                servers=running, connect_timeout=2, allow_reconnect=False, error_cb=_quiet
            )
            try:
                reply = await client.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2.0)
            finally:
                await client.close()
            info: dict[str, Any] = json.loads(reply.data)
            return None if "error" in info else info
        return None

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {name}\n{node.server.log_tail(lines)}"
            for name, node in self.nodes.items()
            if node.server is not None
        )


async def _quiet(exc: Exception) -> None:
    """A node that was just started may not listen yet: polling tries the next one."""


@contextlib.contextmanager
def running_cluster(folder: Path, *, size: int = 3, timeout: float = 60.0) -> Iterator[NatsCluster]:
    """`size` nodes n1..n<size> started together; yielded once they agree on a meta leader."""
    cluster = NatsCluster()
    for index in range(1, size + 1):
        name = f"n{index}"
        (folder / name).mkdir(parents=True, exist_ok=True)
        cluster.nodes[name] = ClusterNode(
            name=name,
            client_port=free_port(),
            route_port=free_port(),
            monitor_port=free_port(),
            folder=folder / name,
        )
    try:
        for name in cluster.nodes:
            cluster.start(name)
        cluster.wait_for_meta_leader(timeout=timeout)
        yield cluster
    finally:
        cluster.stop()
