"""Applying a batch of step results to the executions they belong to (pure).

The results handler loads every execution of the batch in one read, and `plan_results`
applies the results in order, several of one execution on top of each other, so that each
changed execution is written once. What it cannot apply here (the execution or its
workflow is not loaded) goes `one_by_one`, as do the results of an execution whose write
loses its compare-and-set (`ResultPlan.lost`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vigil.common.documents import Execution
from vigil.common.errors import VigilError
from vigil.common.messages import StepResult
from vigil.common.resources import Workflow
from vigil.engine.domain.machine import Transition, apply_result


@dataclass(slots=True, kw_only=True)
class ResultPlan:
    # Per execution id: the execution as it was loaded, as it is after its results
    # (version bumped once if any changed it), and the transitions, by index in the batch.
    loaded: dict[str, Execution] = field(default_factory=dict)
    current: dict[str, Execution] = field(default_factory=dict)
    applied: dict[str, list[tuple[int, Transition]]] = field(default_factory=dict)
    one_by_one: list[int] = field(default_factory=list)
    errors: dict[int, VigilError] = field(default_factory=dict)

    def writes(self) -> list[tuple[Execution, int]]:
        """`(execution, expected_version)` of every execution a result changed."""
        return [
            (self.current[eid], self.loaded[eid].version)
            for eid, steps in self.applied.items()
            if any(transition.changed for _, transition in steps)
        ]

    def lost(self, saved: Sequence[bool]) -> set[str]:
        """The executions whose write (in `writes()` order) lost its compare-and-set."""
        written = [execution.id for execution, _ in self.writes()]
        return {eid for eid, ok in zip(written, saved, strict=True) if not ok}

    def to_publish(self, lost: set[str]) -> list[Transition]:
        """What the saved executions ask for, with their final document.

        Each transition keeps its events and cancellations; only the last one dispatches
        (an earlier state's request may be done already).
        """
        published: list[Transition] = []
        for eid, steps in self.applied.items():
            if eid in lost:
                continue
            final = steps[-1][1]
            published += [
                Transition(
                    execution=self.current[eid],
                    changed=transition.changed,
                    dispatch=final.dispatch if transition is final else [],
                    events=transition.events,
                    cancellations=transition.cancellations,
                )
                for _, transition in steps
            ]
        return published

    def retry_one_by_one(self, lost: set[str]) -> list[int]:
        """Indexes to apply one at a time (reloading): not applied here, or lost a race."""
        again = [index for eid in lost for index, _ in self.applied[eid]]
        return sorted([*self.one_by_one, *again])


def plan_results(
    results: Sequence[StepResult],
    executions: Mapping[str, Execution],
    workflow_of: Callable[[Execution], Workflow | None],
    *,
    now: datetime,
) -> ResultPlan:
    plan = ResultPlan()
    for index, result in enumerate(results):
        eid = result.execution_id
        execution = plan.current.get(eid) or executions.get(eid)
        workflow = None if execution is None else workflow_of(execution)
        if execution is None or workflow is None:
            plan.one_by_one.append(index)
            continue
        plan.loaded.setdefault(eid, executions[eid])
        try:
            transition = apply_result(execution, workflow, result, now=now)
        except VigilError as exc:
            plan.errors[index] = exc
            continue
        if transition.changed:
            version = plan.loaded[eid].version + 1
            plan.current[eid] = transition.execution.model_copy(update={"version": version})
        else:
            plan.current.setdefault(eid, execution)
        plan.applied.setdefault(eid, []).append((index, transition))
    return plan
