"""The Secrets Vigil's manifests reference, with fresh random values, as YAML on stdout.

    python3 deploy/vigil_secrets.py | kubectl apply -f -

One Secret per NATS user, `vigil-nats-<user>` (key `password`; nats-server reads them all,
each service mounts its own), and `vigil-api-tokens` (key `tokens`: ingest's API tokens
file, one `<token> <scopes>` per line) holding an operator token (`read,operate`) and a
metrics token (`read`, for Prometheus' scrape of ingest's /metrics), which is also in
`vigil-metrics-token` (key `token`) for Prometheus to mount. Nothing is printed but the
YAML: read a token back with `kubectl -n vigil get secret …`.

`--keep FILE` writes the YAML to FILE the first time and prints FILE's content after that,
so a development cluster (tilt/Tiltfile) keeps its passwords across runs. Standard library
only: it runs with any python3, before `make dev`.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
from pathlib import Path

# The users of deploy/nats/vigil-users.conf (vigil.common.bus_permissions).
NATS_USERS = ("ingest", "controller", "engine", "executor", "sink", "provisioner")


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "vigil"},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def secrets_yaml(namespace: str) -> str:
    """A YAML stream of the Secrets, each value 32 random bytes, URL-safe base64."""
    objects = [
        _secret(f"vigil-nats-{user}", namespace, {"password": secrets.token_urlsafe(32)})
        for user in NATS_USERS
    ]
    operator, metrics = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    tokens = f"# <token> <scopes>\n{operator} read,operate\n{metrics} read\n"
    objects.append(_secret("vigil-api-tokens", namespace, {"tokens": tokens}))
    objects.append(_secret("vigil-metrics-token", namespace, {"token": metrics}))
    # JSON is YAML: no third-party module is needed to write it.
    return "".join(f"---\n{json.dumps(o, indent=2)}\n" for o in objects)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="vigil", help="namespace (default: vigil)")
    parser.add_argument(
        "--keep", type=Path, help="write to this file once, then print it on later runs"
    )
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists():
        sys.stdout.write(args.keep.read_text(encoding="utf-8"))
        return 0
    text = secrets_yaml(args.namespace)
    if args.keep is not None:
        args.keep.parent.mkdir(parents=True, exist_ok=True)
        args.keep.touch(mode=0o600)
        args.keep.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
