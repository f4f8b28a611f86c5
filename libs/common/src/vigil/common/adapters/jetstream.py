"""NATS JetStream adapter: connecting, acknowledged publishing, pull consumers, KV.

Streams and the config bucket are created and updated by `jetstream_layout`, through
`ensure_streams` and `ensure_config_bucket` here. `connect` takes a comma-separated list
of servers (every node of a cluster) and, once connected, reconnects forever, moving to
the next server of the list (and those the cluster announces) when one goes away.

Publishing waits for the stream's acknowledgement (a 2xx upstream depends on it) and sets
`Nats-Msg-Id`, `Vigil-Schema` and the W3C trace headers. Consuming is a pull loop per
durable consumer: each message runs its handler in a span parented by the message's
`traceparent`, heartbeats with `in_progress` while the handler runs, and ends as the one
mapping in `vigil.common.outcomes` says: ack, nak with a delay, or term (+ dead letter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from pydantic import ValidationError

from vigil.common import subjects
from vigil.common.adapters.consumer_metrics import (
    count_dead_letter,
    count_delivery,
    count_settled,
    start_counting,
)
from vigil.common.adapters.jetstream_acks import AckedPublisher, Wire
from vigil.common.adapters.jetstream_kv import JetStreamBucket
from vigil.common.adapters.jetstream_layout import ensure_bucket, ensure_stream, open_bucket
from vigil.common.adapters.nats_connection import connect_client
from vigil.common.adapters.nats_errors import NATS_ERRORS
from vigil.common.bus import BatchHandler, ConsumerStats, Delivery, Handler, Outgoing
from vigil.common.errors import InvalidInput, MessageTooLarge, TransientError
from vigil.common.messages import Contract, DeadLetter
from vigil.common.outcomes import outcome_for
from vigil.common.settings import BusCredentials
from vigil.common.streams import ConsumerSpec, StreamSpec
from vigil.common.telemetry import extract_context, inject_headers

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("vigil.bus")

SCHEMA_HEADER = "Vigil-Schema"
# What nats-py writes around the headers of an HPUB; the server counts headers and body
# together against `max_payload` and drops the connection of a client that goes over.
_HEADER_FRAME_BYTES = len(b"NATS/1.0\r\n") + len(b"\r\n")
MSG_ID_HEADER = "Nats-Msg-Id"
PUBLISH_TIMEOUT_SECONDS = 5.0
FETCH_TIMEOUT_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 3.0
# The server may deliver a few times more than our limit: a delivery cut short by a crash
# never reaches the handler's dead-letter decision, so the next one must still come.
MAX_DELIVER_MARGIN = 3


def _header_bytes(headers: dict[str, str]) -> int:
    """The size of `headers` in an HPUB as nats-py writes them: `Key: value` and CRLF each."""
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return _HEADER_FRAME_BYTES + lines


class JetStreamBus:
    """The bus port (`vigil.common.bus`) on JetStream. Build with `await JetStreamBus.connect()`."""

    def __init__(self, client: Client) -> None:
        self._nc = client
        self._js = client.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
        self._acks = AckedPublisher(client)

    @classmethod
    async def connect(
        cls, url: str, *, name: str, credentials: BusCredentials | None = None
    ) -> JetStreamBus:
        """Connect to one server of `url` (a comma-separated list: every node of a
        cluster), as the user of `credentials` if given (`nats_connection.connect_client`).
        """
        return cls(await connect_client(url, name=name, credentials=credentials))

    async def close(self) -> None:
        # Not drain(): every publish was already acknowledged, unsettled messages are
        # redelivered by the server, and draining a pull subscription can block shutdown.
        with contextlib.suppress(*NATS_ERRORS):
            await asyncio.wait_for(self._nc.close(), timeout=CLOSE_TIMEOUT_SECONDS)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    # --- provisioning --------------------------------------------------------------------

    async def ensure_streams(self, specs: Sequence[StreamSpec]) -> None:
        """Create or update every stream so its configuration is the one given."""
        for spec in specs:
            await ensure_stream(self._js, spec)

    async def ensure_config_bucket(
        self, bucket: str = subjects.CONFIG_BUCKET, *, replicas: int = 1
    ) -> None:
        """Create the config bucket, or change its replica count to `replicas`."""
        await ensure_bucket(self._js, bucket, replicas=replicas)

    # --- publishing ----------------------------------------------------------------------

    @staticmethod
    def _headers(
        message: Contract, msg_id: str, trace_headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Message headers; `trace_headers` are the current span's, once per batch."""
        headers = {MSG_ID_HEADER: msg_id, SCHEMA_HEADER: message.schema_name}
        headers.update(inject_headers({}) if trace_headers is None else trace_headers)
        return headers

    async def publish(self, subject: str, message: Contract, *, msg_id: str) -> bool:
        """Publish and wait for the stream's ack. Returns False if it was a duplicate."""
        (encoded,) = self._encoded([Outgoing(subject=subject, message=message, msg_id=msg_id)])
        try:
            (duplicate,) = await self._acks.publish([encoded], timeout=PUBLISH_TIMEOUT_SECONDS)
        except NATS_ERRORS as exc:
            msg = f"publish to {subject} was not acknowledged: {exc!r}"
            raise TransientError(msg) from exc
        return not duplicate

    async def publish_all(self, items: Sequence[Outgoing]) -> int:
        """Publish `items` pipelined; return when all are acknowledged (count of new ones).

        Raises MessageTooLarge, before anything is sent, if one is over the server's
        `max_payload`. Raises TransientError if any was not acknowledged: the caller must
        not report success, and re-sending is safe because every item carries its
        `Nats-Msg-Id`.
        """
        encoded = self._encoded(items, trace_headers=inject_headers({}))  # one span per batch
        try:
            duplicates = await self._acks.publish(encoded, timeout=PUBLISH_TIMEOUT_SECONDS)
        except NATS_ERRORS as exc:
            msg = f"publish of {len(items)} message(s) was not acknowledged: {exc!r}"
            raise TransientError(msg) from exc
        return duplicates.count(False)

    def _encoded(
        self, items: Sequence[Outgoing], *, trace_headers: dict[str, str] | None = None
    ) -> list[Wire]:
        """Every item as it goes on the wire; MessageTooLarge names the first one over the
        server's `max_payload` (headers included, as the server counts them)."""
        limit = int(self._nc.max_payload)
        encoded: list[Wire] = []
        for index, item in enumerate(items):
            own = None if item.trace_headers is None else dict(item.trace_headers)
            headers = self._headers(item.message, item.msg_id, own or trace_headers)
            payload = item.message.model_dump_json(by_alias=True).encode()
            size = len(payload) + _header_bytes(headers)
            if size > limit:
                msg = (
                    f"message {index} for {item.subject} is {size} bytes with its headers, "
                    f"over the server's max_payload of {limit} bytes"
                )
                raise MessageTooLarge(msg, index=index, size=size, limit=limit)
            encoded.append(Wire(subject=item.subject, payload=payload, headers=headers))
        return encoded

    async def announce(self, subject: str, message: Contract) -> None:
        """Fire-and-forget core NATS publish (not stored): for best-effort notices."""
        try:
            await self._nc.publish(
                subject,
                message.model_dump_json(by_alias=True).encode(),
                headers=inject_headers({SCHEMA_HEADER: message.schema_name}),
            )
        except NATS_ERRORS as exc:
            log.warning("announce_failed", subject=subject, error=str(exc))

    async def listen[T: Contract](
        self,
        subject: str,
        model: type[T],
        handler: Callable[[T], Awaitable[None]],
        *,
        ready: asyncio.Event | None = None,
    ) -> None:
        """Run `handler` for every core NATS message on `subject` until cancelled; `ready`
        is set once the server has the subscription (what is published after, arrives)."""
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def enqueue(msg: Msg) -> None:
            await queue.put(msg)

        subscription = await self._nc.subscribe(subject, cb=enqueue)
        if ready is not None:
            # Two round trips: nats.py 2.16 writes a flush's PING ahead of a SUB still in
            # its pending buffer; the second PING goes after it.
            await self._nc.flush()
            await self._nc.flush()
            ready.set()
        try:
            while True:
                msg = await queue.get()
                try:
                    decoded = model.model_validate_json(msg.data)
                except ValidationError as exc:
                    log.warning("notice_undecodable", subject=msg.subject, error=str(exc))
                    continue
                await handler(decoded)
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await subscription.unsubscribe()

    # --- consuming -----------------------------------------------------------------------

    async def consume[T: Contract](
        self, spec: ConsumerSpec, model: type[T], handler: Handler[T]
    ) -> None:
        """Run `handler` for every message of the durable consumer until cancelled."""
        start_counting(spec)
        psub = await self._subscribe(spec)
        in_flight = 0
        room = asyncio.Event()
        room.set()

        async def run_one(msg: Msg) -> None:
            nonlocal in_flight
            try:
                await self._process(spec, model, handler, msg)
            finally:
                in_flight -= 1
                room.set()

        async with asyncio.TaskGroup() as tasks:
            try:
                while True:
                    await room.wait()
                    want = min(spec.batch, spec.max_in_flight - in_flight)
                    if want < 1:
                        # A fetch may hand over more than asked (nats-py adds what is left
                        # in its queue from an earlier pull): wait until handlers finish.
                        room.clear()
                        continue
                    try:
                        msgs = await self._fetch(psub, want)
                    except TimeoutError:  # nats' TimeoutError is one too: nothing to fetch
                        continue
                    except NATS_ERRORS as exc:
                        log.warning("fetch_failed", consumer=spec.durable, error=str(exc))
                        await asyncio.sleep(1.0)
                        continue
                    in_flight += len(msgs)
                    if in_flight >= spec.max_in_flight:
                        room.clear()
                    for msg in msgs:
                        tasks.create_task(run_one(msg))
            except asyncio.CancelledError:
                # Unsubscribe before the in-flight handlers nak (the TaskGroup cancels them
                # next): otherwise the server hands a nak'd message straight back to this
                # dead subscription's open pull request, where nobody reads it.
                with contextlib.suppress(*NATS_ERRORS):
                    await psub.unsubscribe()
                raise

    async def consume_batches[T: Contract](
        self, spec: ConsumerSpec, model: type[T], handler: BatchHandler[T]
    ) -> None:
        """Like `consume`, but hand the handler everything one fetch returned at once.

        For handlers whose cost is per round trip rather than per message (one store
        transaction, one pipelined publish for a whole batch). At most
        `max_in_flight // batch` batches run at a time; each message is still settled on
        its own outcome.
        """
        start_counting(spec)
        psub = await self._subscribe(spec)
        slots = asyncio.Semaphore(max(1, spec.max_in_flight // spec.batch))

        async def run_batch(msgs: list[Msg]) -> None:
            try:
                await self._process_batch(spec, model, handler, msgs)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as tasks:
            try:
                while True:
                    await slots.acquire()
                    try:
                        msgs = await self._fetch(psub, spec.batch)
                    except TimeoutError:
                        slots.release()
                        continue
                    except NATS_ERRORS as exc:
                        slots.release()
                        log.warning("fetch_failed", consumer=spec.durable, error=str(exc))
                        await asyncio.sleep(1.0)
                        continue
                    tasks.create_task(run_batch(msgs))
            except asyncio.CancelledError:
                with contextlib.suppress(*NATS_ERRORS):
                    await psub.unsubscribe()
                raise

    async def _process_batch[T: Contract](
        self, spec: ConsumerSpec, model: type[T], handler: BatchHandler[T], msgs: list[Msg]
    ) -> None:
        items: list[tuple[T, Delivery]] = []
        kept: list[Msg] = []
        for msg in msgs:
            delivery = _delivery(spec, msg)
            try:
                items.append((model.model_validate_json(msg.data), delivery))
                kept.append(msg)
            except ValidationError as exc:
                error = InvalidInput(f"undecodable {model.__name__}: {exc}")
                await self._settle(spec, msg, delivery, error)
        if not items:
            return
        # A batch of one is a child of its message's span, so a quiet system shows one
        # trace per alert end to end; a bigger batch links to every message's span (and
        # the handler parents each message's own work in its trace).
        parent = extract_context(items[0][1].headers) if len(items) == 1 else None
        links = [
            trace.Link(span_context)
            for delivery in (d for _, d in items)
            if (
                span_context := trace.get_current_span(
                    extract_context(delivery.headers)
                ).get_span_context()
            ).is_valid
        ]
        heartbeat = asyncio.create_task(self._heartbeat_all(kept, spec.ack_wait_seconds / 3))
        outcomes: Sequence[BaseException | None]
        with tracer.start_as_current_span(
            f"consume {spec.durable} batch",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.batch.message_count": len(items)},
        ):
            try:
                outcomes = _checked(await handler(items), len(items))
            except asyncio.CancelledError:
                with contextlib.suppress(*NATS_ERRORS):
                    for unsettled in kept:
                        await unsettled.nak()
                raise
            except Exception as exc:  # noqa: BLE001 - the outermost loop decides ack or nak
                outcomes = [exc] * len(items)
            finally:
                heartbeat.cancel()
        # An ack is a buffered publish: settled in line, without a task per message. What
        # failed may publish a dead letter (and wait for its acknowledgement): together.
        failed: list[Coroutine[object, object, None]] = []
        for msg, (_, delivery), outcome in zip(kept, items, outcomes, strict=True):
            if outcome is None:
                await self._settle(spec, msg, delivery, None)
            else:
                failed.append(self._settle(spec, msg, delivery, outcome))
        await asyncio.gather(*failed)

    @staticmethod
    async def _heartbeat_all(msgs: list[Msg], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for msg in msgs:
                with contextlib.suppress(*NATS_ERRORS):
                    await msg.in_progress()

    @staticmethod
    async def _fetch(psub: nats.js.JetStreamContext.PullSubscription, want: int) -> list[Msg]:
        """Wait for at least one message, then return at once with what is ready, up to
        `want`.

        nats-py asks for `want` with `no_wait` and an expiry: the server holds the request
        until a message arrives (or it expires), then answers with every message ready and
        ends the batch right away. No drain window: a second lingering request for the rest
        held every batch, even a batch of one, back by its whole timeout.
        """
        return await psub.fetch(want, timeout=FETCH_TIMEOUT_SECONDS)

    async def _subscribe(self, spec: ConsumerSpec) -> nats.js.JetStreamContext.PullSubscription:
        """Create or update the durable consumer to `spec`, then bind to it.

        Named as well as durable: nats.py then puts the filter in the request subject
        (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`), which the bus permissions pin.
        """
        config = ConsumerConfig(
            name=spec.durable,
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_seconds,
            max_deliver=spec.max_deliver + MAX_DELIVER_MARGIN,
            max_ack_pending=max(spec.max_in_flight * 4, 256),
            filter_subject=spec.filter_subject,
        )
        while True:
            try:
                await self._js.add_consumer(spec.stream, config=config)
                return await self._js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
            except NATS_ERRORS as exc:
                log.warning("subscribe_failed", consumer=spec.durable, error=str(exc))
                await asyncio.sleep(1.0)

    async def _process[T: Contract](
        self, spec: ConsumerSpec, model: type[T], handler: Handler[T], msg: Msg
    ) -> None:
        delivery = _delivery(spec, msg)
        headers = delivery.headers
        error: BaseException | None = None
        with (
            structlog.contextvars.bound_contextvars(
                subject=msg.subject, delivery=delivery.delivery
            ),
            tracer.start_as_current_span(
                f"consume {spec.durable}",
                context=extract_context(headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.destination.name": msg.subject},
            ),
        ):
            heartbeat = asyncio.create_task(self._heartbeat(msg, spec.ack_wait_seconds / 3))
            try:
                try:
                    decoded = model.model_validate_json(msg.data)
                except ValidationError as exc:
                    raise InvalidInput(f"undecodable {model.__name__}: {exc}") from exc
                await handler(decoded, delivery)
            except asyncio.CancelledError:
                # Shutting down: let the server redeliver after ack_wait, promptly.
                with contextlib.suppress(*NATS_ERRORS):
                    await msg.nak()
                raise
            except Exception as exc:  # noqa: BLE001 - the outermost loop decides ack or nak
                error = exc
            finally:
                heartbeat.cancel()
            await self._settle(spec, msg, delivery, error)

    async def _settle(
        self, spec: ConsumerSpec, msg: Msg, delivery: Delivery, error: BaseException | None
    ) -> None:
        outcome = outcome_for(error, delivery=delivery.delivery, max_deliver=spec.max_deliver)
        count_settled(spec, outcome.action)
        try:
            if outcome.action == "ack":
                await msg.ack()
                return
            log.warning(
                "message_failed",
                consumer=spec.durable,
                action=outcome.action,
                delay=outcome.delay,
                reason=outcome.reason,
                exc_info=error if not isinstance(error, TransientError) else None,
            )
            if outcome.dead_letter:
                await self._dead_letter(spec, msg, delivery, outcome.reason or "unknown")
                count_dead_letter(spec)
            if outcome.action == "nak":
                await msg.nak(delay=outcome.delay)
            else:
                await msg.term()
        except NATS_ERRORS as exc:
            # The message stays unacknowledged and is redelivered after ack_wait.
            log.warning("settle_failed", consumer=spec.durable, error=str(exc))
        except TransientError as exc:
            log.warning("dead_letter_failed", consumer=spec.durable, error=str(exc))
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak(delay=outcome.delay or 1.0)

    async def _dead_letter(
        self, spec: ConsumerSpec, msg: Msg, delivery: Delivery, reason: str
    ) -> None:
        letter = DeadLetter(
            stream=spec.stream,
            consumer=spec.durable,
            subject=msg.subject,
            deliveries=delivery.delivery,
            reason=reason,
            headers=dict(delivery.headers),
            data=msg.data.decode(errors="replace"),
        )
        await self.publish(
            subjects.dlq(spec.stream, spec.durable),
            letter,
            msg_id=f"dlq:{spec.stream}:{spec.durable}:{delivery.stream_sequence}",
        )
        log.error("message_dead_lettered", consumer=spec.durable, reason=reason)

    @staticmethod
    async def _heartbeat(msg: Msg, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(*NATS_ERRORS):
                await msg.in_progress()

    # --- key-value -----------------------------------------------------------------------

    async def config_bucket(self, bucket: str = subjects.CONFIG_BUCKET) -> JetStreamBucket:
        """The config bucket, as provisioning made it (one replica if nothing did)."""
        return JetStreamBucket(await open_bucket(self._js, bucket), self._js, bucket)

    async def consumer_stats(self, stream: str, durable: str) -> ConsumerStats:
        """How far a durable consumer is behind its stream."""
        try:
            info = await self._js.consumer_info(stream, durable)
            stream_info = await self._js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return ConsumerStats(stream=stream, consumer=durable, exists=False)
        except NATS_ERRORS as exc:
            msg = f"cannot read consumer {stream}/{durable}: {exc}"
            raise TransientError(msg) from exc
        return ConsumerStats(
            stream=stream,
            consumer=durable,
            stream_messages=int(stream_info.state.last_seq),
            acknowledged=int(info.ack_floor.stream_seq if info.ack_floor else 0),
            pending=int(info.num_pending or 0),
            in_flight=int(info.num_ack_pending or 0),
        )


def _checked(
    outcomes: Sequence[BaseException | None], expected: int
) -> Sequence[BaseException | None]:
    if len(outcomes) != expected:
        msg = f"batch handler returned {len(outcomes)} outcomes for {expected} messages"
        raise RuntimeError(msg)  # a programming error: every message is retried
    return outcomes


def _delivery(spec: ConsumerSpec, msg: Msg) -> Delivery:
    meta = msg.metadata
    count_delivery(spec, meta.num_delivered)
    return Delivery(
        subject=msg.subject,
        headers=dict(msg.headers or {}),
        delivery=meta.num_delivered,
        max_deliver=spec.max_deliver,
        stream_sequence=meta.sequence.stream,
    )
