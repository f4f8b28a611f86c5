"""One trace per alert through the engine: each execution keeps its alert's trace, and
every step it dispatches (at admission, on a result, in a batch of many executions' work)
carries a `traceparent` of that trace, under a `dispatch` span parented there."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.support.definitions import workflow
from tests.support.engine import Engine, running_engine
from tests.support.tracing import install_span_exporter
from vigil.common.bus import Delivery
from vigil.common.messages import AlertReceived, StepRequest

TWO_STEPS = workflow(
    "disk",
    """
    - name: measure
      cli: {command: ["df", "-P"], timeout: 30s}
    - name: clean
      cli: {command: ["true"], timeout: 30s}
    """,
)
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"


def carried(trace_id: str, span_id: str = "b7ad6b7169203331") -> Delivery:
    """The first delivery of an alert whose message carries `trace_id`."""
    return Delivery(
        subject="vigil.alerts.ops.am",
        headers={"traceparent": f"00-{trace_id}-{span_id}-01"},
        delivery=1,
        max_deliver=5,
        stream_sequence=1,
    )


def traceparent_of(engine: Engine, request: StepRequest) -> str:
    (item,) = [
        o for o in engine.bus.published if o.message == request and o.trace_headers is not None
    ]
    assert item.trace_headers is not None
    return item.trace_headers["traceparent"]


async def receive(engine: Engine, *alerts: tuple[AlertReceived, Delivery]) -> None:
    assert await engine.admission.on_alerts(list(alerts)) == [None] * len(alerts)


async def test_each_alert_of_a_batch_starts_an_execution_in_its_own_trace(
    tmp_path: Path,
) -> None:
    spans = install_span_exporter()
    spans.clear()
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        await receive(
            engine,
            (engine.alert("DiskFull", fingerprint="a"), carried(TRACE_A)),
            (engine.alert("DiskFull", fingerprint="b"), carried(TRACE_B)),
        )

        by_fingerprint = {e.alert.fingerprint: e for e in await engine.executions()}
        assert by_fingerprint["a"].trace_id == TRACE_A
        assert by_fingerprint["b"].trace_id == TRACE_B
        for execution in by_fingerprint.values():
            assert execution.trace_parent is not None
            assert execution.trace_parent.split("-")[1] == execution.trace_id
            (request,) = [r for r in engine.requests() if r.execution_id == execution.id]
            assert traceparent_of(engine, request).split("-")[1] == execution.trace_id

        finished = spans.get_finished_spans()
        admitted = {f"{s.context.trace_id:032x}": s for s in finished if s.name == "admit alert"}
        assert set(admitted) == {TRACE_A, TRACE_B}
        assert all(s.parent is not None and s.parent.span_id for s in admitted.values())
        for dispatch in (s for s in finished if s.name == "dispatch cli"):
            trace_id = f"{dispatch.context.trace_id:032x}"
            assert dispatch.parent is not None
            assert dispatch.parent.span_id == admitted[trace_id].context.span_id


async def test_results_handled_together_dispatch_each_next_step_in_its_alerts_trace(
    tmp_path: Path,
) -> None:
    """A batch of results (no span of either trace is current) still continues each
    execution's own trace: the dispatch is parented by the stored admission span."""
    install_span_exporter()
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        await receive(
            engine,
            (engine.alert("DiskFull", fingerprint="a"), carried(TRACE_A)),
            (engine.alert("DiskFull", fingerprint="b"), carried(TRACE_B)),
        )
        first = engine.requests("cli")
        engine.bus.published.clear()

        assert await engine.report(*(engine.result_for(r) for r in first)) == [None, None]

        executions = {e.id: e for e in await engine.executions()}
        nexts = [r for r in engine.requests("cli") if r.step == "clean"]
        assert len(nexts) == 2
        for request in nexts:
            traceparent = traceparent_of(engine, request)
            execution = executions[request.execution_id]
            assert traceparent.split("-")[1] == execution.trace_id
            assert traceparent != execution.trace_parent  # a dispatch span of its own


WAIT_THEN_CLI = workflow(
    "later",
    """
    - name: settle
      wait: {duration: 5m}
    - name: measure
      cli: {command: ["df", "-P"], timeout: 30s}
    """,
)


async def test_a_timers_wake_up_dispatches_in_the_trace_of_the_alert(tmp_path: Path) -> None:
    """No message of the alert is being handled when the wait ends: the timer loop's
    dispatch is parented by the admission span the execution stored."""
    spans = install_span_exporter()
    spans.clear()
    async with running_engine(tmp_path, WAIT_THEN_CLI) as engine:
        await receive(engine, (engine.alert("DiskFull"), carried(TRACE_A)))
        assert engine.requests() == []

        engine.clock.advance(5 * 60)
        assert await engine.timers.tick() == 1

        (request,) = engine.requests("cli")
        assert traceparent_of(engine, request).split("-")[1] == TRACE_A
    (admitted,) = [s for s in spans.get_finished_spans() if s.name == "admit alert"]
    (dispatch,) = [s for s in spans.get_finished_spans() if s.name == "dispatch cli"]
    assert dispatch.parent is not None
    assert dispatch.parent.span_id == admitted.context.span_id


async def test_the_engines_lines_about_an_execution_carry_its_alerts_trace_id(
    tmp_path: Path,
) -> None:
    """Handled in one batch, two alerts' lines still name each its own trace (the batch's
    span is in neither)."""
    install_span_exporter()
    async with running_engine(tmp_path, TWO_STEPS) as engine:
        with capture_logs() as lines:
            await receive(
                engine,
                (engine.alert("DiskFull", fingerprint="a"), carried(TRACE_A)),
                (engine.alert("DiskFull", fingerprint="b"), carried(TRACE_B)),
            )
        traces = {e.id: e.trace_id for e in await engine.executions()}

    for event in ("execution_created", "step_dispatched"):
        named = {
            (line["execution_id"], line["trace_id"]) for line in lines if line["event"] == event
        }
        assert named == set(traces.items()), event
