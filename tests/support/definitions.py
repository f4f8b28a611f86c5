"""Definitions and Alertmanager bodies for tests and benchmarks, written once.

`alertmanager_source`, `log_sink` and `workflow` are the YAML every suite starts from;
`write_definitions` puts documents into a folder `vigil up` reads; `alertmanager_body` and
`firing_alert` build what Alertmanager posts (webhook version 4).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

STARTS_AT = "2026-11-24T09:00:00Z"


def alertmanager_source(namespace: str, name: str = "am") -> str:
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{type: alertmanager}}
"""


def log_sink(namespace: str, name: str = "console") -> str:
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{type: log}}
"""


def workflow(
    name: str,
    steps: str,
    *,
    namespace: str = "ops",
    matcher: str = 'alertname="DiskFull"',
    spec: str = "",
) -> str:
    """A Workflow triggered by `matcher`; `steps` is the YAML list of its steps and `spec`
    more fields of its spec, both written from the left margin."""
    more = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  trigger:
    matchers: ['{matcher}']
{more + chr(10) if more else ""}  steps:
{textwrap.indent(textwrap.dedent(steps).strip(chr(10)), "    ")}
"""


def documents(*texts: str) -> str:
    """YAML documents joined into one stream."""
    return "---\n".join(text if text.endswith("\n") else text + "\n" for text in texts)


def write_definitions(folder: Path, *texts: str, file: str = "definitions.yaml") -> Path:
    """`folder` (created if needed) holding `texts` as one YAML file; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(documents(*texts), encoding="utf-8")
    return folder


def firing_alert(
    alertname: str, /, *, status: str = "firing", starts: str = STARTS_AT, **labels: str
) -> dict[str, Any]:
    """One alert of a webhook body, labelled with `alertname` and `labels`."""
    return {
        "status": status,
        "labels": {"alertname": alertname, **labels},
        "annotations": {},
        "startsAt": starts,
    }


def alertmanager_body(
    alerts: list[dict[str, Any]], *, status: str = "firing", **group: Any
) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) carrying `alerts`; `group` adds fields
    such as `groupKey`, `receiver` or `externalURL`."""
    return {"version": "4", "status": status, **group, "alerts": alerts}


# The smallest platform: Source ops/am, and a workflow every alert of it triggers.
ECHO_HELLO = documents(
    alertmanager_source("ops"),
    """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: hello, namespace: ops}
spec:
  steps:
    - name: greet
      cli: {command: ["echo", "hello"]}
""",
)
