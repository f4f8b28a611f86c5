"""`vigil up`: the whole platform on one machine, each service its own process.

Starts nats-server (JetStream, data under `--data-dir`, loopback only, one NATS user per
service with fresh passwords: `vigil.cli.nats`) unless `--nats-url` points elsewhere, has
the `provisioner` user create the streams and the config bucket, then starts the
controller (definitions from `--definitions`), and once it has published, engine,
executor, sink and ingest (HTTP on `--http-port`), each as its own NATS user; sink and
ingest read the Secret values they use from `--definitions` too. Ctrl-C or SIGTERM stops
everything within the grace period.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from vigil.cli.apitoken import api_access
from vigil.cli.lock import DataDirInUse, data_dir_lock, private_dir
from vigil.cli.nats import EmbeddedBus, embedded_bus, nats_server_binary
from vigil.cli.supervisor import Service, Supervisor
from vigil.common.bus_permissions import PROVISIONER
from vigil.common.settings import is_loopback, redacted_url

log = structlog.get_logger("vigil.up")

SERVICES = ("controller", "engine", "executor", "sink", "ingest")
# Services whose replicas share the work through their durable consumers. Ingest owns the
# HTTP port and the controller is the one writer of definitions: one process each.
SCALABLE = ("engine", "executor", "sink")
MAX_REPLICAS = 8
READY_TIMEOUT_SECONDS = 60.0
# Credentials of the user's shell must not mix with those of the embedded server's users.
BUS_VARIABLES = ("VIGIL_NATS_USER", "VIGIL_NATS_PASSWORD", "VIGIL_NATS_PASSWORD_FILE")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    definitions: Path
    data_dir: Path
    http_host: str
    http_port: int
    nats_url: str | None
    nats_port: int
    store: str | None
    grace_seconds: float
    no_auth: bool = False
    replicas: dict[str, int] | None = None  # processes per service; absent: one


def parse_replicas(text: str) -> dict[str, int]:
    """`engine=2,executor=2` → {"engine": 2, "executor": 2}; an error names what is wrong."""
    replicas: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, count = item.partition("=")
        name = name.strip()
        if not equals or not count.strip().isdigit():
            msg = f"{item!r}: expected SERVICE=N, e.g. engine=2"
            raise argparse.ArgumentTypeError(msg)
        if name not in SCALABLE:
            msg = (
                f"{name!r} cannot have replicas here: only {', '.join(SCALABLE)} do"
                " (ingest owns the HTTP port, the controller is the one writer of definitions)"
            )
            raise argparse.ArgumentTypeError(msg)
        if not 1 <= int(count) <= MAX_REPLICAS:
            msg = f"{name}={count.strip()}: between 1 and {MAX_REPLICAS} processes"
            raise argparse.ArgumentTypeError(msg)
        if name in replicas:
            msg = f"{name} is given twice"
            raise argparse.ArgumentTypeError(msg)
        replicas[name] = int(count)
    return replicas


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_port(port: int, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    msg = f"nats-server did not listen on port {port} within {timeout:g}s"
    raise TimeoutError(msg)


async def up(options: UpOptions) -> int:
    data_dir = options.data_dir.resolve()
    opened = private_dir(data_dir)
    if opened is not None:
        log.warning("data_dir_made_private", path=str(data_dir), was=oct(opened), now="0o700")
    try:
        with data_dir_lock(data_dir):
            return await _up(options, data_dir)
    except DataDirInUse as exc:
        log.error("vigil_refused", reason=str(exc))
        return 1


async def _up(options: UpOptions, data_dir: Path) -> int:
    if options.no_auth and not is_loopback(options.http_host):
        log.error(
            "vigil_refused",
            reason=f"--no-auth serves the API to anyone: bind 127.0.0.1, not {options.http_host}",
        )
        return 1
    access = api_access(data_dir=data_dir, no_auth=options.no_auth, environ=dict(os.environ))
    if options.no_auth:
        log.warning("api_auth_disabled", detail=access.hint)
    store_url = options.store or f"sqlite:///{data_dir / 'vigil.db'}"
    supervisor = Supervisor(grace_seconds=options.grace_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    try:
        bus: EmbeddedBus | None = None
        nats_url = options.nats_url
        if nats_url is None:
            bus = await _start_nats(supervisor, options, data_dir)
            nats_url = bus.url
            if await _provision(supervisor, bus, stop) != 0:
                log.error("vigil_failed_to_start", error="the bus could not be provisioned")
                return 1
            if stop.is_set():
                return 0

        services = _services(
            options,
            bus=bus,
            access_env=access.env,
            common={
                "VIGIL_NATS_URL": nats_url,
                "VIGIL_STORE_URL": store_url,
                "VIGIL_LOG_FORMAT": "console",
                "PYTHONUNBUFFERED": "1",
            },
        )
        await _start_services(supervisor, services, stop)
        if not stop.is_set():
            base = f"http://{options.http_host}:{options.http_port}"
            log.info(
                "vigil_up",
                console=f"{base}/",
                webhooks=f"{base}/hooks/<namespace>/<source>",
                api=f"{base}/api/v1/executions",
                docs=f"{base}/docs",
                api_token=access.hint,
                nats=redacted_url(nats_url),
                nats_users=str(bus.config.parent) if bus else "from the environment",
                store=store_url,
                definitions=str(options.definitions),
            )
        await stop.wait()
        log.info("vigil_stopping")
        return 0
    except TimeoutError as exc:
        log.error("vigil_failed_to_start", error=str(exc))
        return 1
    finally:
        await supervisor.stop()
        log.info("vigil_stopped")


async def _start_services(
    supervisor: Supervisor, services: dict[str, list[Service]], stop: asyncio.Event
) -> None:
    """The controller first (the others wait for its definitions), then all the others;
    each process's metrics URL once every one is ready."""
    for controller in services["controller"]:
        supervisor.start(controller)
        await _until(stop, supervisor.wait_ready(controller, timeout=READY_TIMEOUT_SECONDS))
    others = [process for name in SERVICES[1:] for process in services[name]]
    for process in others:
        supervisor.start(process)
    for process in others:
        await _until(stop, supervisor.wait_ready(process, timeout=READY_TIMEOUT_SECONDS))
    if stop.is_set():
        return
    for process in (p for name in SERVICES for p in services[name]):
        # Where Prometheus scrapes each service (ops ports are free ones, per start).
        ready = process.ready_url or ""
        log.info("service_metrics", service=process.name, url=ready.replace("/readyz", "/metrics"))


def _services(
    options: UpOptions,
    *,
    bus: EmbeddedBus | None,
    access_env: dict[str, str],
    common: dict[str, str],
) -> dict[str, list[Service]]:
    """Each service's processes (one, or `--replicas` of them: `engine-1`, `engine-2`):
    argv, environment (with the service's NATS user on the embedded bus) and readiness URL.
    Replicas share their service's durable consumers, so the bus spreads the work."""
    services: dict[str, list[Service]] = {}
    for name in SERVICES:
        count = (options.replicas or {}).get(name, 1)
        services[name] = [
            _service(
                name,
                f"{name}-{index}" if count > 1 else name,
                options,
                bus=bus,
                access_env=access_env,
                common=common,
            )
            for index in range(1, count + 1)
        ]
    return services


def _service(
    name: str,
    label: str,
    options: UpOptions,
    *,
    bus: EmbeddedBus | None,
    access_env: dict[str, str],
    common: dict[str, str],
) -> Service:
    definitions = str(options.definitions.resolve())
    ops_port = options.http_port if name == "ingest" else free_port()
    env = {**common, f"VIGIL_{name.upper()}_OPS_PORT": str(ops_port)}
    if bus is not None:
        env.update(bus.env_for(name))
    if name == "controller":
        env["VIGIL_CONTROLLER_DEFINITIONS"] = definitions
    if name in {"ingest", "sink"}:
        # They read the Secret values they use from the same folder, at use.
        env["VIGIL_DEFINITIONS"] = definitions
    if name == "ingest":
        env["VIGIL_INGEST_HTTP_PORT"] = str(options.http_port)
        env["VIGIL_INGEST_HTTP_HOST"] = options.http_host
        env.update(access_env)
    return Service(
        name=label,
        argv=[sys.executable, "-m", f"vigil.{name}"],
        env=env,
        unset_env=BUS_VARIABLES if bus is not None else (),
        ready_url=f"http://127.0.0.1:{ops_port}/readyz",
    )


async def _start_nats(supervisor: Supervisor, options: UpOptions, data_dir: Path) -> EmbeddedBus:
    """The embedded nats-server, with this start's users and passwords, listening."""
    nats_port = options.nats_port or free_port()
    bus = embedded_bus(data_dir, port=nats_port)
    supervisor.start(Service(name="nats", argv=bus.argv(nats_server_binary()), tier=0))
    await _wait_port(nats_port, timeout=20.0)
    return bus


async def _provision(supervisor: Supervisor, bus: EmbeddedBus, stop: asyncio.Event) -> int:
    """Streams and config bucket, made by the one user allowed to (its exit code).

    A process of its own, as the Kubernetes Job is: the cli itself never talks to the bus.
    """
    provisioning = Service(
        name="provision",
        argv=[sys.executable, "-m", "vigil.common.adapters.provisioning"],
        env={
            **bus.env_for(PROVISIONER),
            "VIGIL_LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
        },
        unset_env=BUS_VARIABLES,
    )
    code: list[int] = []

    async def run() -> None:
        code.append(await supervisor.run_once(provisioning))

    await _until(stop, run())
    return code[0] if code else 0  # stopped meanwhile: nothing failed


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Await `work` unless `stop` is set first (Ctrl-C during start-up)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        if pending not in done:
            pending.cancel()
    if task in done:
        task.result()
