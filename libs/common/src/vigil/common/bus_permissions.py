"""Who may publish and subscribe to what on the bus: one NATS user per service (DESIGN §14).

The one table of bus permissions. Each user is granted exactly the subjects its service's
code uses, built from `vigil.common.subjects` (names) and `vigil.common.streams` (durable
consumers), so renaming a subject or a consumer moves its grant with it. Anything not
granted is refused by nats-server: only the engine publishes step requests, executor and
sink publish only results (and dead letters of their own consumers), ingest only alerts
and operator commands (the engine also publishes alerts: those of schedule Sources). A
seventh user, `provisioner`, creates and updates the streams and the config bucket and can
do nothing else; services connect with
`VIGIL_NATS_PROVISION=false` where it exists.

What nats.py sends for each JetStream operation, and so what a user must be allowed:

- acknowledged publish to a stream: the subject itself; the ack comes to the user's inbox;
- a durable pull consumer: `$JS.API.CONSUMER.CREATE.<stream>.<durable>.<filter>` (the
  adapter names its consumers, so the filter is part of the subject and the grant pins it),
  `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` to pull, `$JS.ACK.<stream>.<durable>.>` to
  ack, nak, term and heartbeat, and the consumer's dead-letter subject;
- a KV watch: `$JS.API.STREAM.INFO.KV_<bucket>` to open the bucket, an ordered ephemeral
  consumer (`$JS.API.CONSUMER.CREATE.KV_<bucket>`, its info, and flow-control replies to
  `$JS.FC.KV_<bucket>.>`); a KV write is a publish to `$KV.<bucket>.<key>`;
- every reply (publish acks, API answers, pulled messages, watch entries) arrives on the
  user's own inbox prefix `_INBOX.<user>` (the adapter connects with it), so no user can
  subscribe to another's replies.

`nats_authorization()` renders the table as the `authorization` block of a nats-server
configuration: `vigil up` writes it with one random password per user, and
`python -m vigil.common.bus_permissions deploy/nats` (`make nats-auth`) writes it for a
production NATS with passwords from environment variables; a test fails when the committed
file is stale. Neighbours: `settings.ServiceSettings` (the credentials a service connects
with), `adapters.jetstream` (connects with them and the inbox prefix).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vigil.common import streams, subjects
from vigil.common.streams import ConsumerSpec

JS_API = "$JS.API"
CONFIG_STREAM = f"KV_{subjects.CONFIG_BUCKET}"
PROVISIONER = "provisioner"
# The step kinds the executor runs (`executor.app.built_runners`): one consumer each.
EXECUTOR_KINDS = ("cli", "agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class BusUser:
    """One NATS user: the subjects it may publish to and subscribe to (nothing else)."""

    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def inbox_prefix(user: str) -> str:
    """Where `user`'s replies arrive: a prefix no other user may subscribe to."""
    return f"_INBOX.{user}"


def _consumer(spec: ConsumerSpec) -> tuple[str, ...]:
    """Create (with this filter only), pull, settle and dead-letter one durable consumer."""
    return (
        f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}.{spec.filter_subject}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
        f"$JS.ACK.{spec.stream}.{spec.durable}.>",
        subjects.dlq(spec.stream, spec.durable),
    )


def _config_reader() -> tuple[str, ...]:
    """Open and watch the definitions bucket (`JetStreamBucket.watch`).

    The ordered consumer of a watch is ephemeral: nats.py names neither it nor its filter
    in the request subject, so the create grant is per stream; it can only read this
    bucket, whose entries every service with this grant already receives.
    """
    return (
        f"{JS_API}.STREAM.INFO.{CONFIG_STREAM}",
        f"{JS_API}.CONSUMER.CREATE.{CONFIG_STREAM}",
        f"{JS_API}.CONSUMER.INFO.{CONFIG_STREAM}.*",
        f"$JS.FC.{CONFIG_STREAM}.>",
    )


def _config_writer() -> tuple[str, ...]:
    """The controller's puts and deletes (a KV write is a publish to `$KV.<bucket>.<key>`)."""
    return (*_config_reader(), f"$KV.{subjects.CONFIG_BUCKET}.>")


def _consumer_stats(specs: Iterable[ConsumerSpec]) -> tuple[str, ...]:
    """Read how far these consumers are behind (`JetStreamBus.consumer_stats`)."""
    return tuple(
        grant
        for spec in specs
        for grant in (
            f"{JS_API}.CONSUMER.INFO.{spec.stream}.{spec.durable}",
            f"{JS_API}.STREAM.INFO.{spec.stream}",
        )
    )


def _provisioning() -> tuple[str, ...]:
    """Create, update and look at Vigil's streams and the config bucket's stream.

    Only the provisioner has these: a stream's configuration can republish what it stores
    to any subject, so whoever may change streams may in effect publish anywhere.
    """
    names = [spec.name for spec in streams.stream_specs()] + [CONFIG_STREAM]
    return tuple(
        f"{JS_API}.STREAM.{verb}.{name}" for name in names for verb in ("INFO", "CREATE", "UPDATE")
    )


def _user(name: str, *, publish: Iterable[str], subscribe: Iterable[str] = ()) -> BusUser:
    return BusUser(
        name=name,
        publish=tuple(dict.fromkeys(publish)),
        subscribe=(*dict.fromkeys(subscribe), f"{inbox_prefix(name)}.>"),
    )


def bus_users() -> tuple[BusUser, ...]:
    """Every user of the bus and its grants: the table."""
    return (
        _user(
            "ingest",
            publish=(
                subjects.all_alerts(),  # webhooks: vigil.alerts.<namespace>.<source>
                subjects.control("cancel"),  # API: cancel an execution (the engine does it)
                subjects.control("run"),  # API: a manual run
                *_consumer_stats(streams.MONITORED),  # API: /api/v1/stats
                *_config_reader(),
            ),
            # The console's live pages hear execution events as they are published.
            subscribe=(subjects.all_events(),),
        ),
        _user(
            "controller",
            publish=(
                *_config_writer(),
                *_consumer(streams.CONTROLLER_EVENTS),  # Kubernetes mode: status counters
            ),
        ),
        _user(
            "engine",
            publish=(
                subjects.all_steps(),  # step requests: the engine alone
                subjects.all_alerts(),  # the alerts of schedule Sources, fired at their ticks
                subjects.all_events(),  # execution lifecycle
                subjects.step_cancellations(),  # core NATS notices to running steps
                *_consumer(streams.ENGINE_ALERTS),
                *_consumer(streams.ENGINE_RESULTS),
                *_consumer(streams.ENGINE_CANCEL),
                *_consumer(streams.ENGINE_RUN),
                *_consumer(streams.ENGINE_DEAD_STEPS),
                *_config_reader(),
            ),
        ),
        _user(
            "executor",
            publish=(
                subjects.results(),
                *(g for kind in EXECUTOR_KINDS for g in _consumer(streams.executor_steps(kind))),
            ),
            subscribe=(subjects.step_cancellations(),),
        ),
        _user(
            "sink",
            publish=(subjects.results(), *_consumer(streams.SINK_NOTIFY), *_config_reader()),
        ),
        _user(PROVISIONER, publish=_provisioning()),
    )


def bus_user(name: str) -> BusUser:
    """The table's entry for `name`; KeyError naming the users there are otherwise."""
    for user in bus_users():
        if user.name == name:
            return user
    msg = f"no bus user {name!r}; the users are {', '.join(u.name for u in bus_users())}"
    raise KeyError(msg)


# --- nats-server configuration -----------------------------------------------------------

type PasswordOf = Callable[[str], str]


def literal_passwords(passwords: Mapping[str, str]) -> PasswordOf:
    """Passwords written into the configuration, quoted (embedded mode: a 0600 file)."""
    return lambda user: json.dumps(passwords[user])


def password_variable(user: str) -> str:
    """The environment variable nats-server reads `user`'s password from (production)."""
    return f"VIGIL_NATS_{user.upper()}_PASSWORD"


def environment_passwords(user: str) -> str:
    """A variable reference, resolved by nats-server from its environment at start."""
    return f"${password_variable(user)}"


def _subject_list(items: Iterable[str], indent: str) -> str:
    return "".join(f"{indent}{json.dumps(item)}\n" for item in items)


def nats_authorization(password_of: PasswordOf) -> str:
    """The `authorization { users = [...] }` block granting the table, and nothing more.

    With users defined, nats-server refuses a connection without valid credentials.
    """
    blocks = []
    for user in bus_users():
        blocks.append(
            "    {\n"
            f"      user: {json.dumps(user.name)}\n"
            f"      password: {password_of(user.name)}\n"
            "      permissions: {\n"
            "        publish: { allow: [\n"
            f"{_subject_list(user.publish, '          ')}"
            "        ] }\n"
            "        subscribe: { allow: [\n"
            f"{_subject_list(user.subscribe, '          ')}"
            "        ] }\n"
            "      }\n"
            "    }\n"
        )
    return "authorization {\n  users = [\n" + "".join(blocks) + "  ]\n}\n"


DEPLOY_FILE = "vigil-users.conf"
DEPLOY_HEADER = """\
# Generated from vigil.common.bus_permissions by `make nats-auth`; do not edit.
# The NATS users of Vigil and what each may publish and subscribe to. Include it in the
# nats-server configuration (`include ./vigil-users.conf`) and give nats-server each
# password in the environment variable named below, from the service's Secret (see
# deploy/nats/README.md).
"""


def deploy_file() -> str:
    """`deploy/nats/vigil-users.conf`: the table with passwords from the environment."""
    return DEPLOY_HEADER + nats_authorization(environment_passwords)


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "deploy/nats")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEPLOY_FILE).write_text(deploy_file(), encoding="utf-8")
    sys.stdout.write(f"wrote {folder / DEPLOY_FILE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
