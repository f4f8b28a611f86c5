"""The models of an agent step in order of preference, asked one after another.

The first model that answers wins; each one that does not leaves its reason. The reasons
and the model that answered go into the transcript, turn by turn, so a reader sees when and
why the local model gave way to the fallback. When none answers, the turn fails with
every reason.

A `Breaker`, shared by every step of an executor, remembers models that keep failing: after
`failures` unavailable answers in a row, a model is passed over (with that reason) for
`seconds`, so an alert storm does not wait a request timeout per turn on a dead local
server; then one turn tries it again. A breaker never leaves a turn without a model to
ask: when every model left is passed over, they are asked anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from prometheus_client import Counter

from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.executor.models import ChatModel, Conversation, ModelReply, ModelUnavailable

log = structlog.get_logger(__name__)

PASSED_OVER = Counter(
    "vigil_agent_models_passed_over_total",
    "Model requests not made because the model's breaker was open.",
    ["model"],
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    reply: ModelReply
    answered_by: str
    index: int  # the answering model's place in the order of preference
    failovers: tuple[str, ...] = ()  # "model: reason", for each model that did not answer


@dataclass(slots=True, kw_only=True)
class Breaker:
    failures: int = 3  # unavailable answers in a row that open it
    seconds: float = 30.0  # how long an open breaker passes the model over
    clock: Clock = SYSTEM_CLOCK
    _in_a_row: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, datetime] = field(default_factory=dict)

    def passed_over(self, model: str) -> str:
        """Why `model` is not asked now ("" when it is)."""
        until = self._open_until.get(model)
        if until is None or self.clock.now() >= until:
            return ""
        left = (until - self.clock.now()).total_seconds()
        return (
            f"passed over: unavailable {self._in_a_row[model]} times in a row, "
            f"asked again in {left:.0f}s"
        )

    def failed(self, model: str) -> None:
        self._in_a_row[model] = self._in_a_row.get(model, 0) + 1
        if self._in_a_row[model] >= self.failures:
            self._open_until[model] = self.clock.now() + timedelta(seconds=self.seconds)

    def answered(self, model: str) -> None:
        self._in_a_row.pop(model, None)
        self._open_until.pop(model, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failover:
    models: Sequence[ChatModel]
    breaker: Breaker | None = None

    async def complete(self, conversation: Conversation, *, skip: int = 0) -> Answer:
        """Ask the models from the `skip`-th on; raise ModelUnavailable if none answered."""
        reasons: list[str] = []
        candidates = list(enumerate(self.models))[skip:]
        if self.breaker is not None:
            breaker = self.breaker
            closed = [(i, m) for i, m in candidates if not breaker.passed_over(m.name)]
            if closed:  # else every one is passed over: ask them anyway
                for _, model in candidates:
                    why = breaker.passed_over(model.name)
                    if why:
                        reasons.append(f"{model.name}: {why}")
                        PASSED_OVER.labels(model=model.name).inc()
                candidates = closed
        for index, model in candidates:
            try:
                reply = await model.complete(conversation)
            except ModelUnavailable as exc:
                reasons.append(f"{model.name}: {exc.reason}")
                log.warning("model_failover", model=model.name, reason=exc.reason)
                if self.breaker is not None and not exc.healthy:
                    self.breaker.failed(model.name)
                continue
            if self.breaker is not None:
                self.breaker.answered(model.name)
            return Answer(
                reply=reply, answered_by=model.name, index=index, failovers=tuple(reasons)
            )
        if not self.models[skip:]:
            reasons.append("no model is configured" if skip == 0 else "no model is left")
        raise ModelUnavailable("; ".join(reasons))
