"""The models of an agent step in order of preference, asked one after another.

The first model that answers wins; each one that does not leaves its reason. The reasons
and the model that answered go into the transcript, turn by turn, so a reader sees when and
why the local model gave way to the fallback. When none answers, the turn fails with
every reason.

A `Breaker`, shared by every step of an executor, remembers models that keep failing
(timeouts, connection errors, 5xx, 429): after `failures` in a row, a model is passed over
(with that reason) for `seconds`, so an alert storm does not wait a request timeout per
turn on a dead local server; then one turn tries it again. A breaker never leaves a turn
without a model to ask: when every model left is passed over, they are asked anyway.
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
    """Per model (and model id a step asks for): open after `failures` unavailable answers
    in a row; open, the model is passed over for `seconds`; then one turn tries it (the
    others still pass it over): an answer closes the breaker, a failure opens it again. A
    try that never comes back (its step was cancelled) is given up after `seconds`."""

    failures: int = 3
    seconds: float = 30.0
    clock: Clock = SYSTEM_CLOCK
    _in_a_row: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, datetime] = field(default_factory=dict)
    _trying_until: dict[str, datetime] = field(default_factory=dict)

    def passed_over(self, model: str) -> str:
        """Why `model` is not asked now ("" when it is: maybe as the one try)."""
        now = self.clock.now()
        until = self._open_until.get(model)
        if until is None:
            return ""
        failed = f"unavailable {self._in_a_row.get(model, 0)} times in a row"
        if now < until:
            return f"passed over: {failed}, tried again in {(until - now).total_seconds():.0f}s"
        trying = self._trying_until.get(model)
        if trying is not None and now < trying:
            return f"passed over: {failed}, another step is trying it"
        self._trying_until[model] = now + timedelta(seconds=self.seconds)
        return ""

    def failed(self, model: str) -> None:
        self._in_a_row[model] = self._in_a_row.get(model, 0) + 1
        tried = self._trying_until.pop(model, None) is not None
        if tried or self._in_a_row[model] >= self.failures:
            self._open_until[model] = self.clock.now() + timedelta(seconds=self.seconds)

    def answered(self, model: str) -> None:
        self._in_a_row.pop(model, None)
        self._open_until.pop(model, None)
        self._trying_until.pop(model, None)


def breaker_key(model: ChatModel, conversation: Conversation) -> str:
    """The model as asked: a step's own model id is another model on the same server."""
    if conversation.model is None:
        return model.name
    return f"{model.name.split('/', 1)[0]}/{conversation.model}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failover:
    models: Sequence[ChatModel]
    breaker: Breaker | None = None

    async def complete(self, conversation: Conversation, *, skip: int = 0) -> Answer:
        """Ask the models from the `skip`-th on; raise ModelUnavailable if none answered."""
        reasons: list[str] = []
        candidates = self._not_passed_over(conversation, skip, reasons)
        for index, model in candidates:
            key = breaker_key(model, conversation)
            try:
                reply = await model.complete(conversation)
            except ModelUnavailable as exc:
                reasons.append(f"{model.name}: {exc.reason}")
                log.warning("model_failover", model=model.name, reason=exc.reason)
                if self.breaker is not None and not exc.healthy:
                    self.breaker.failed(key)
                continue
            if self.breaker is not None:
                self.breaker.answered(key)
            return Answer(
                reply=reply, answered_by=model.name, index=index, failovers=tuple(reasons)
            )
        if not self.models[skip:]:
            reasons.append("no model is configured" if skip == 0 else "no model is left")
        raise ModelUnavailable("; ".join(reasons))

    def _not_passed_over(
        self, conversation: Conversation, skip: int, reasons: list[str]
    ) -> list[tuple[int, ChatModel]]:
        """The models to ask, in order; those the breaker passes over leave a reason. When
        it would pass over every one, all are asked."""
        candidates = list(enumerate(self.models))[skip:]
        if self.breaker is None:
            return candidates
        why = {i: self.breaker.passed_over(breaker_key(m, conversation)) for i, m in candidates}
        asked = [(i, m) for i, m in candidates if not why[i]]
        if not asked:
            return candidates
        for i, model in candidates:
            if why[i]:
                reasons.append(f"{model.name}: {why[i]}")
                PASSED_OVER.labels(model=model.name).inc()
        return asked
