"""What the platform benchmark runs: its definitions, whose steps each write a line (so
every run is counted, and the latency phases' steps stamp when they ran), and reading
those lines back."""

from __future__ import annotations

from pathlib import Path

from tests.support.definitions import alertmanager_source, log_sink


def definitions(work: Path, receiver_port: int) -> tuple[str, ...]:
    """Source, sinks and workflows; each step's process writes a line into `work/<phase>`."""
    steps = work / "steps"
    three = """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}, namespace: bench}}
spec:
  trigger: {{sources: [am], matchers: ['alertname="{alertname}"']}}
  steps:
    - name: run
      cli:
        command: [sh, -c, 'echo "$1" >> "{steps}/$0"', "{{{{ alert.labels.phase }}}}",
                  "{{{{ alert.labels.seq }}}}"]
    - name: check
      condition: 'true'
    - name: tell
      notify:
        sinks: [{sink}]
        title: "{{{{ alert.labels.alertname }}}} {{{{ alert.labels.seq }}}}"
"""
    workflows = f"""\
# One trivial step: processing an alert measures record + match + execution.
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {{name: noop, namespace: bench}}
spec:
  trigger: {{sources: [am], matchers: ['alertname="Bench"']}}
  steps:
    - name: check
      condition: 'true'
---
# The first step stamps when its process runs: the latency phases' end point.
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {{name: stamp, namespace: bench}}
spec:
  trigger: {{sources: [am], matchers: ['alertname="Stamp"']}}
  steps:
    - name: stamp
      cli:
        command: [bash, -c, 'echo "$1 $EPOCHREALTIME" >> "{steps}/$0"',
                  "{{{{ alert.labels.phase }}}}", "{{{{ alert.labels.seq }}}}"]
---
{three.format(name="three", alertname="Three", sink="log", steps=steps)}---
{three.format(name="three-hook", alertname="ThreeHook", sink="hook", steps=steps)}"""
    hook_sink = f"""\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: hook, namespace: bench}}
spec:
  type: webhook
  webhook: {{url: "http://127.0.0.1:{receiver_port}/notify"}}
"""
    return (alertmanager_source("bench"), log_sink("bench", "log"), hook_sink, workflows)


def step_lines(folder: Path, label: str) -> dict[int, list[str]]:
    """What the step processes of phase `label` wrote, by seq (more than one: ran twice)."""
    lines: dict[int, list[str]] = {}
    path = folder / label
    if path.exists():
        for line in path.read_text().splitlines():
            seq, _, rest = line.partition(" ")
            lines.setdefault(int(seq), []).append(rest)
    return lines
