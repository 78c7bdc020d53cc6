"""Retrying JetStream set-up through the faults a cluster shows while it settles.

A freshly created R3 stream or bucket elects its leader for a moment, and a server restart or
a meta-leader election does the same: requests then time out, find no responders or get a
503.  Opening a bucket or creating a stream retries those for a bounded time, with backoff;
anything else (a refused login, ``permission_denied``; a bad config) fails at once.
:func:`open_key_value` and :func:`open_object_store` bind a bucket, creating it when there is
none, under that retry: every store opens its buckets through them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import structlog
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from hieramas.bus import Bus, BusError
from hieramas.natsconn import jetstream_replicas

__all__ = [
    "RETRY_WITHIN_S",
    "STREAM_NAME_IN_USE",
    "is_transient",
    "open_key_value",
    "open_object_store",
    "retry_transient",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

RETRY_WITHIN_S = 30.0
"""How long set-up keeps retrying transient faults (a leader election takes a few seconds)."""

STREAM_NAME_IN_USE = 10058
"""JetStream's error code for creating a stream whose name is taken, with other settings (with
the same settings creating is a no-op that succeeds)."""

_TRANSIENT_ERR_CODES = frozenset(
    {
        10005,  # no suitable peers for placement: a fresh cluster does not know its peers yet
        10008,  # JetStream system temporarily unavailable
        10009,  # JetStream cluster can not handle request: no leader at the moment
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether a JetStream request may succeed if simply made again a little later."""
    if isinstance(exc, BusError):
        return exc.code in ("timeout", "no_responders")
    if isinstance(exc, (asyncio.TimeoutError, nats.errors.NoRespondersError)):
        return True  # nats.errors.TimeoutError is an asyncio.TimeoutError
    if isinstance(exc, ServiceUnavailableError):
        return True
    # the key-value errors are APIErrors made without calling its __init__: no err_code
    return isinstance(exc, APIError) and getattr(exc, "err_code", None) in _TRANSIENT_ERR_CODES


async def retry_transient(
    make: Callable[[], Awaitable[T]],
    *,
    bus: Bus,
    what: str,
    within_s: float = RETRY_WITHIN_S,
) -> T:
    """``await make()``, made again with exponential backoff (0.1 s up to 2 s, jittered) while
    it fails with a transient fault and ``within_s`` has not passed; the last error otherwise.

    Each retry is logged (``jetstream.retry``) and counted (``jetstream.retried``) on ``bus``.
    """

    def note(state: RetryCallState) -> None:
        bus.counters["jetstream.retried"] += 1
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("jetstream.retry", what=what, attempt=state.attempt_number, error=repr(error))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(within_s),
        wait=wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.2),
        before_sleep=note,
        reraise=True,
    ):
        with attempt:
            return await make()
    raise AssertionError("unreachable")  # tenacity re-raises the last error


async def _bind_or_create(
    bind: Callable[[], Awaitable[T]], create: Callable[[], Awaitable[T]]
) -> T:
    try:
        return await bind()
    except BucketNotFoundError:
        pass
    try:
        return await create()
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
        return await bind()  # made meanwhile by another process, with other settings


async def open_key_value(bus: Bus, bucket: str, *, description: str, history: int = 16) -> KeyValue:
    """Bind KV ``bucket``, creating it (``history`` revisions a key, the configured
    replicas) if there is none; safe from several processes, transient faults retried."""
    js = bus.js
    config = KeyValueConfig(
        bucket=bucket, history=history, description=description, replicas=jetstream_replicas()
    )
    return await retry_transient(
        lambda: _bind_or_create(lambda: js.key_value(bucket), lambda: js.create_key_value(config)),
        bus=bus,
        what=f"open bucket {bucket}",
    )


async def open_object_store(bus: Bus, name: str, *, description: str) -> ObjectStore:
    """Bind object store ``name``, creating it (file storage, the configured replicas) if
    there is none; safe from several processes, transient faults retried."""
    js = bus.js
    config = ObjectStoreConfig(
        description=description, storage=StorageType.FILE, replicas=jetstream_replicas()
    )
    return await retry_transient(
        lambda: _bind_or_create(
            lambda: js.object_store(name), lambda: js.create_object_store(name, config=config)
        ),
        bus=bus,
        what=f"open object store {name}",
    )
