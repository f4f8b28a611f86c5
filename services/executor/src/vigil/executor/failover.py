"""The models of an agent step in order of preference, asked one after another.

The first model that answers wins; each one that does not leaves its reason. The reasons
and the model that answered go into the transcript, turn by turn, so a reader sees when and
why the local model gave way to the fallback. When none answers, the turn fails with
every reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from vigil.executor.models import ChatModel, Conversation, ModelReply, ModelUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    reply: ModelReply
    answered_by: str
    index: int  # the answering model's place in the order of preference
    failovers: tuple[str, ...] = ()  # "model: reason", for each model that did not answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Failover:
    models: Sequence[ChatModel]

    async def complete(self, conversation: Conversation, *, skip: int = 0) -> Answer:
        """Ask the models from the `skip`-th on; raise ModelUnavailable if none answered."""
        reasons: list[str] = []
        for index, model in enumerate(self.models[skip:], start=skip):
            try:
                reply = await model.complete(conversation)
            except ModelUnavailable as exc:
                reasons.append(f"{model.name}: {exc.reason}")
                log.warning("model_failover", model=model.name, reason=exc.reason)
                continue
            return Answer(
                reply=reply, answered_by=model.name, index=index, failovers=tuple(reasons)
            )
        if not self.models[skip:]:
            reasons.append("no model is configured" if skip == 0 else "no model is left")
        raise ModelUnavailable("; ".join(reasons))
