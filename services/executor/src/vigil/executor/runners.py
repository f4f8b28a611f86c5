"""The step runner port: how the executor runs one attempt of a step.

A runner is chosen by the step's kind (and, for `cli`, by settings: a local process in
embedded mode, a Kubernetes pod in a cluster). It runs the attempt to its end and reports
what happened; when `cancel` is set it stops the attempt at once and reports it cancelled.
If the task running it is cancelled (the executor shuts down), it lets the
`CancelledError` through, so that the request is redelivered (a local process is killed;
a pod keeps running for the redelivery to find). Once the result is published the
executor calls `release`. Registering a new
runner is a new module under `adapters/` and one entry in `app.py`; the handler does not
change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from vigil.common.messages import StepRequest
from vigil.executor.domain.results import RunOutcome


class StepRunner(Protocol):
    async def run(self, request: StepRequest, cancel: asyncio.Event) -> RunOutcome:
        """Run one attempt. Raises InvalidInput when the request is not one for it."""

    async def release(self, request: StepRequest) -> None:
        """The attempt's result is published: free what the attempt still holds (its pod).
        Best effort; it logs rather than raises."""


type Runners = Mapping[str, StepRunner]
