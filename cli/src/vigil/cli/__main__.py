"""The `vigil` command: `up` runs the platform embedded, `validate` checks definitions,
`test` runs a workflow locally; `executions`, `execution`, `alerts` and `definitions` show
a running Vigil's state (`vigil.cli.views`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from vigil.cli import views
from vigil.cli.trial import TrialOptions, parse_step_outputs, trial
from vigil.cli.up import UpOptions, parse_replicas, up
from vigil.cli.validate import validate
from vigil.common.errors import InvalidInput
from vigil.common.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Vigil alert-response platform.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("up", help="run the whole platform on this machine")
    run.add_argument(
        "--definitions",
        type=Path,
        default=Path(os.environ.get("VIGIL_DEFINITIONS", "examples/quickstart")),
        help="folder of Source/Workflow/Sink YAML (default: examples/quickstart)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("VIGIL_DATA_DIR", ".vigil")),
        help="where NATS and the SQLite store keep their data (default: .vigil)",
    )
    run.add_argument(
        "--http-port",
        type=int,
        default=int(os.environ.get("VIGIL_HTTP_PORT", "8080")),
        help="port of webhooks and the API (default: 8080)",
    )
    run.add_argument(
        "--http-host",
        default=os.environ.get("VIGIL_HTTP_HOST", "127.0.0.1"),
        help="address of webhooks and the API (default: 127.0.0.1)",
    )
    run.add_argument(
        "--nats-url",
        default=os.environ.get("VIGIL_NATS_URL"),
        help="use this NATS server instead of starting one",
    )
    run.add_argument(
        "--nats-port",
        type=int,
        default=int(os.environ.get("VIGIL_NATS_PORT", "0")),
        help="port of the embedded nats-server (default: any free port)",
    )
    run.add_argument(
        "--store",
        default=os.environ.get("VIGIL_STORE_URL"),
        help="store URL: sqlite:///path or mongodb://host:port/db"
        " (default: sqlite:///<data-dir>/vigil.db)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds services get to stop before they are killed (default: 10)",
    )

    run.add_argument(
        "--replicas",
        type=parse_replicas,
        default=os.environ.get("VIGIL_REPLICAS", ""),
        metavar="SERVICE=N,...",
        help="processes per service, e.g. engine=2,executor=2 (engine, executor and sink"
        " scale out; default: one of each)",
    )
    run.add_argument(
        "--no-auth",
        action="store_true",
        help="serve the API without tokens (loopback only; a warning is logged every minute)",
    )

    check = commands.add_parser("validate", help="check definitions offline")
    check.add_argument("path", type=Path, help="a YAML file or a folder of them")

    test = commands.add_parser(
        "test",
        help="run one workflow locally against an alert payload, sending nothing",
        description="Shows, for every alert of the payload, whether it matched (and why "
        "not), each step's state and output, and the rendered notifications. cli steps run "
        "for real unless --dry-run.",
    )
    test.add_argument("definitions", type=Path, help="folder (or file) of definitions")
    test.add_argument("--workflow", required=True, help="NAMESPACE/NAME of the workflow")
    test.add_argument(
        "--alert",
        required=True,
        type=Path,
        help="an Alertmanager webhook payload, or a single alert, as JSON",
    )
    test.add_argument(
        "--dry-run", action="store_true", help="run no command: show the rendered argv instead"
    )
    test.add_argument(
        "--step-output",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="with --dry-run: use FILE as the stdout of cli step NAME",
    )
    test.add_argument(
        "--source", help="the Source the alerts come from (default: the first of the trigger)"
    )
    _view_parsers(commands)
    return parser


STATES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out")
VIEWS = ("executions", "execution", "alerts", "definitions")


def _view_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The console's views in the terminal, against a running Vigil."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"Vigil's API (default: $VIGIL_URL, else {views.DEFAULT_URL}); "
        "the token is $VIGIL_API_TOKEN",
    )
    common.add_argument("--output", choices=("table", "json"), default="table")
    listed = commands.add_parser(
        "executions", parents=[common], help="executions, newest first (--watch follows them)"
    )
    listed.add_argument("--namespace")
    listed.add_argument("--workflow")
    listed.add_argument("--state", choices=STATES)
    listed.add_argument("--search", metavar="TEXT", help="text in the alert's labels (`team=db`)")
    listed.add_argument("--since", choices=("15m", "1h", "6h", "24h", "7d"), help="started since")
    listed.add_argument("--limit", type=int, default=50, choices=range(1, 501), metavar="1-500")
    listed.add_argument(
        "--watch",
        action="store_true",
        help=f"keep going: a line per new execution or change of state (read every "
        f"{views.WATCH_SECONDS:g} s)",
    )
    one = commands.add_parser(
        "execution", parents=[common], help="one execution: timeline, outputs, findings"
    )
    one.add_argument("id", help="the execution's id")
    found = commands.add_parser("alerts", parents=[common], help="alert history, newest first")
    found.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="MATCHER",
        help="an Alertmanager matcher over labels, e.g. 'team=\"db\"' (repeatable)",
    )
    found.add_argument("--status", choices=("firing", "resolved"))
    found.add_argument("--namespace")
    found.add_argument("--limit", type=int, default=50, choices=range(1, 501), metavar="1-500")
    commands.add_parser(
        "definitions", parents=[common], help="every definition and whether it is valid"
    )


def _view(args: argparse.Namespace) -> int:
    api = views.Api.from_environment(args.url)
    out = sys.stdout
    try:
        if args.command == "executions":
            query = views.ExecutionQuery(
                namespace=args.namespace,
                workflow=args.workflow,
                state=args.state,
                search=args.search,
                since=args.since,
            )
            if args.watch:
                views.watch_executions(api, query, output=args.output, out=out)
            else:
                views.executions(api, query, limit=args.limit, output=args.output, out=out)
        elif args.command == "execution":
            views.execution(api, args.id, output=args.output, out=out)
        elif args.command == "alerts":
            views.alerts(
                api,
                matchers=args.match,
                status=args.status,
                namespace=args.namespace,
                limit=args.limit,
                output=args.output,
                out=out,
            )
        else:
            views.definitions(api, output=args.output, out=out)
    except views.ViewError as exc:
        sys.stderr.write(f"vigil {args.command}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in VIEWS:
        sys.exit(_view(args))
    if args.command == "validate":
        sys.exit(validate(args.path))
    if args.command == "test":
        try:
            outputs = parse_step_outputs(args.step_output)
        except InvalidInput as exc:
            sys.stderr.write(f"vigil test: {exc}\n")
            sys.exit(2)
        sys.exit(
            trial(
                TrialOptions(
                    definitions=args.definitions,
                    workflow=args.workflow,
                    alert_file=args.alert,
                    dry_run=args.dry_run,
                    step_outputs=outputs,
                    source=args.source,
                )
            )
        )
    configure_logging(service="up", fmt="console")
    if not args.definitions.exists():
        sys.stderr.write(f"vigil up: --definitions {args.definitions}: no such file or folder\n")
        sys.exit(2)
    if args.store and not args.store.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
        sys.stderr.write(
            f"vigil up: --store {args.store}: use sqlite:///path or mongodb://host:port/db\n"
        )
        sys.exit(2)
    options = UpOptions(
        definitions=args.definitions,
        data_dir=args.data_dir,
        http_host=args.http_host,
        http_port=args.http_port,
        nats_url=args.nats_url,
        nats_port=args.nats_port,
        store=args.store,
        grace_seconds=args.grace,
        no_auth=args.no_auth,
        replicas=args.replicas,
    )
    sys.exit(asyncio.run(up(options)))


if __name__ == "__main__":
    main()
