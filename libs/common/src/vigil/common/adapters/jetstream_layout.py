"""Creating and updating the JetStream layout: the streams `vigil.common.streams` declares
and the config bucket, each with the replica count the settings ask for.

`JetStreamBus.ensure_streams` and `JetStreamBus.ensure_config_bucket` (the bus adapter,
`vigil.common.adapters.jetstream`) call these; `vigil.common.adapters.service.provision`
decides what to provision. A stream that exists is updated to the declared configuration,
its replica count included (NATS moves its copies); when NATS refuses to change the replica
count, the error is InvalidInput saying what to do, because retrying cannot help. A cluster
that is electing a leader answers 503 or not at all: that is a TransientError.
"""

from __future__ import annotations

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from vigil.common.adapters.nats_errors import NATS_ERRORS
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.streams import StreamSpec

log = structlog.get_logger(__name__)

# JetStream error codes that mean "not now", whatever was asked: the cluster has no meta
# leader yet (10008) or this server cannot answer for it (10009).
_NOT_NOW = frozenset({10008, 10009})
# Also "not now": a placement that lacks servers while one is down (insufficient resources).
_UNAVAILABLE = 503


def stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=(
            RetentionPolicy.WORK_QUEUE if spec.retention == "workqueue" else RetentionPolicy.LIMITS
        ),
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_seconds or None,
        duplicate_window=spec.duplicate_window_seconds,
        num_replicas=spec.replicas,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create the stream, or update it to `spec` (its replica count included).

    Raises InvalidInput when NATS refuses the replica count (a single server asked for
    more than one, or a stream whose count cannot change), TransientError otherwise.
    """
    what = f"stream {spec.name}"
    config = stream_config(spec)
    try:
        try:
            info = await js.stream_info(spec.name)
        except nats.js.errors.NotFoundError:
            await _create(js, config, what=what)
            return
        await _update(js, config, current=info.config.num_replicas or 1, what=what)
    except NATS_ERRORS as exc:
        msg = f"cannot provision {what}: {exc}"
        raise TransientError(msg) from exc


async def ensure_bucket(js: JetStreamContext, bucket: str, *, replicas: int) -> KeyValue:
    """Open the KV bucket, creating it (history 1) or changing its replica count to
    `replicas`; errors as `ensure_stream`."""
    stream = f"KV_{bucket}"  # JetStream's name for a bucket's stream
    what = f"KV bucket {bucket} (stream {stream})"
    try:
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            try:
                kv = await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
            except nats.js.errors.APIError as exc:
                _raise_refusal(exc, current=None, wanted=replicas, what=what)
                raise
            log.info("bucket_created", bucket=bucket, replicas=replicas)
            return kv
        current = info.config.num_replicas or 1
        if current != replicas:
            info.config.num_replicas = replicas
            await _update(js, info.config, current=current, what=what)
        return await js.key_value(bucket)
    except NATS_ERRORS as exc:
        msg = f"cannot provision {what}: {exc}"
        raise TransientError(msg) from exc


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """Open the KV bucket; create it with one replica if nothing provisioned it yet."""
    try:
        try:
            return await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(bucket=bucket, history=1)
    except NATS_ERRORS as exc:
        msg = f"cannot open KV bucket {bucket}: {exc}"
        raise TransientError(msg) from exc


async def _create(js: JetStreamContext, config: StreamConfig, *, what: str) -> None:
    wanted = config.num_replicas or 1
    try:
        await js.add_stream(config)
    except nats.js.errors.APIError as exc:
        _raise_refusal(exc, current=None, wanted=wanted, what=what)
        raise
    log.info("stream_created", stream=config.name, replicas=wanted)


async def _update(js: JetStreamContext, config: StreamConfig, *, current: int, what: str) -> None:
    wanted = config.num_replicas or 1
    try:
        await js.update_stream(config)
    except nats.js.errors.APIError as exc:
        if current != wanted:
            _raise_refusal(exc, current=current, wanted=wanted, what=what)
        raise
    if current != wanted:
        log.info("stream_replicas_changed", stream=config.name, was=current, now=wanted)


def _raise_refusal(
    exc: nats.js.errors.APIError, *, current: int | None, wanted: int, what: str
) -> None:
    """Raise InvalidInput, with NATS's own reason and what to do if the replica count is
    it (NATS gives no code that says so for every refusal), when NATS refused; return
    when the cluster merely cannot answer now (503), or when one replica was asked for (so
    the count is not what NATS refused)."""
    if wanted == 1 or exc.err_code in _NOT_NOW or exc.code == _UNAVAILABLE:
        return
    reason = exc.description or str(exc)
    if current is None:
        msg = (
            f"cannot create {what} with {wanted} replicas (VIGIL_STREAM_REPLICAS={wanted}): "
            f"NATS refused: {reason}. If the replica count is what it refused, run a JetStream "
            f"cluster of at least {wanted} servers, or set VIGIL_STREAM_REPLICAS=1 for a single "
            "nats-server"
        )
    else:
        msg = (
            f"{what} has {current} replica(s) but VIGIL_STREAM_REPLICAS={wanted}, and NATS "
            f"refused to change it: {reason}. If the replica count is what it refused, set "
            f"VIGIL_STREAM_REPLICAS={current} to keep it as it is, or make {wanted} JetStream "
            "servers available and start again"
        )
    raise InvalidInput(msg) from exc
