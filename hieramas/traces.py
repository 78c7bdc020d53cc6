"""Trace events: one per LLM call, per supernode run and per query, into a JetStream stream.

The events themselves are typed records defined in :mod:`hieramas.wire.events`.

Emitting never blocks or fails the query path: :meth:`TraceEmitter.emit`
queues the event (dropping and counting when the queue is full) and a
background task publishes it with JetStream acknowledgements, so an event is
durable once accepted.  Events are batched: each message on
``<prefix>.trace.<event>`` carries ``{"events": [...]}`` of one event kind
gathered over ``linger_s`` (0.1 s), so a burst costs one publish and one
acknowledgement.  A query makes ~40 events; at 20 ms of linger its trace
messages and their acks were about a tenth of all its NATS traffic.  Anyone
can replay the stream (the learner, a monitor, ``hieramas traces tail``); readers
skip, count and report a bad message or record (:class:`ReadStats`), never crash.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from hieramas import metrics
from hieramas.bus import Bus, BusError
from hieramas.jsretry import STREAM_NAME_IN_USE, retry_transient
from hieramas.natsconn import jetstream_replicas
from hieramas.wire import Envelope, Kind, Subjects, WireError
from hieramas.wire.events import Event, decode_trace_message

__all__ = [
    "TRACE_STREAM",
    "ReadStats",
    "TraceEmitter",
    "ensure_trace_stream",
    "read_events",
    "replay",
    "wait_for_jetstream",
]

log = structlog.get_logger(__name__)

TRACE_STREAM = "HIERAMAS_TRACES"


async def wait_for_jetstream(bus: Bus, timeout: float = 30.0) -> None:
    """Wait until JetStream answers (a fresh cluster first elects a meta leader)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await bus.js.account_info()
            return
        except Exception as exc:
            if loop.time() > deadline:
                raise RuntimeError(f"JetStream is not available on this NATS: {exc}") from exc
            await asyncio.sleep(0.25)


async def ensure_trace_stream(
    bus: Bus, subjects: Subjects, *, max_age_s: float = 7 * 86400, max_bytes: int = 1 << 30
) -> None:
    """Create (or update) the trace stream; idempotent, safe from several processes.

    Creating is retried through transient JetStream faults (:mod:`hieramas.jsretry`).  Only a
    stream that exists with other settings is updated, and a login that may not update streams
    (none of ``deploy/nats/users.conf`` may: a stream's config could republish into any
    subject) keeps it as it is."""
    config = StreamConfig(
        name=TRACE_STREAM,
        subjects=[subjects.trace_wildcard],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        max_bytes=max_bytes,
        num_replicas=jetstream_replicas(),
    )

    async def create() -> bool:
        """True if the stream is there as configured; False if it exists with other settings."""
        try:
            await bus.js.add_stream(config)  # the same settings again: a no-op that succeeds
        except BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            return False
        return True

    what = f"create stream {TRACE_STREAM}"
    if await retry_transient(create, bus=bus, what=what):
        return
    try:
        await retry_transient(lambda: bus.js.update_stream(config), bus=bus, what=what)
    except BusError as exc:
        if exc.code != "permission_denied":
            raise
        log.warning("traces.stream_kept", stream=TRACE_STREAM, reason=str(exc))


class TraceEmitter:
    """A bounded, non-blocking publisher of trace events for one process."""

    def __init__(
        self,
        bus: Bus,
        subjects: Subjects,
        *,
        capacity: int = 50_000,
        linger_s: float = 0.1,
        max_batch: int = 512,
    ) -> None:
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.capacity = capacity
        self.bus = bus
        self.subjects = subjects
        self.counters: Counter[str] = Counter()
        metrics.track("traces", self)
        # a plain deque and one wake-up future, not an asyncio.Queue: a query emits ~40
        # events, and the queue's bookkeeping per put and get was most of their cost
        self._pending: deque[Event] = deque()
        self._in_hand = 0  # events taken for publishing, not yet published
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background publisher (call from any thread once the bus runs)."""

        def _start() -> None:
            self._task = self.bus.loop.create_task(self._pump())

        self.bus.loop.call_soon_threadsafe(_start)

    def emit(self, event: Event) -> None:
        """Queue one event from any thread; never raises, never blocks."""
        self.bus.on_loop(self._put, event)

    def _put(self, event: Event) -> None:
        pending = self._pending
        if len(pending) >= self.capacity:
            self.counters["dropped"] += 1
            return
        pending.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (on the loop) until queued events are published and acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while self._pending or self._in_hand:
                if loop.time() > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.005)
            await asyncio.wait_for(self.bus.js.publish_async_completed(), deadline - loop.time())
        except TimeoutError:
            log.warning("traces.flush_timeout", pending=self.bus.js.publish_async_pending())

    async def _pump(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            await asyncio.sleep(self.linger_s)  # let a burst accumulate: one message, one ack
            batch = [pending.popleft() for _ in range(min(len(pending), self.max_batch))]
            self._in_hand = len(batch)
            try:
                if metrics.enabled():  # here, off the handlers that run the query
                    metrics.observe(batch)
                by_kind: dict[str, list[Event]] = {}
                for event in batch:
                    by_kind.setdefault(event.event, []).append(event)
                for kind, events in by_kind.items():
                    await self._publish(kind, events)
            finally:
                self._in_hand = 0

    async def _publish(self, kind: str, events: list[Event]) -> None:
        envelope = Envelope(kind=Kind.TRACE, payload={"events": events}, sender=self.bus.sender)
        try:
            data = self.bus.encode(envelope)
        except WireError:  # over the server's payload limit: split the batch
            if len(events) == 1:
                self._failed(RuntimeError("a single trace event exceeds the NATS payload limit"))
                return
            half = len(events) // 2
            await self._publish(kind, events[:half])
            await self._publish(kind, events[half:])
            return
        try:
            ack = await self.bus.js.publish_async(self.subjects.trace(kind), data, wait_stall=1.0)
        except Exception as exc:  # best effort: count, log, carry on
            self._failed(exc, len(events))
            return
        ack.add_done_callback(lambda future: self._on_ack(future, len(events)))

    def _on_ack(self, future: asyncio.Future[Any], count: int) -> None:
        if future.cancelled() or future.exception() is not None:
            self._failed(future.exception() or RuntimeError("cancelled"), count)
        else:
            self.counters["published"] += count

    def _failed(self, exc: BaseException, count: int = 1) -> None:
        self.counters["failed"] += count
        if self.counters["failed"] in (1, 10, 100) or self.counters["failed"] % 1000 == 0:
            log.warning("traces.publish_failed", error=str(exc), failures=self.counters["failed"])


@dataclass
class ReadStats:
    """What a trace reader skipped: bad messages (not a trace envelope) and bad records
    (one event of a good message), by error code, with the last reason seen."""

    messages: int = 0
    events: int = 0
    bad_messages: int = 0
    bad_events: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    last_error: str = ""

    @property
    def skipped(self) -> int:
        return self.bad_messages + self.bad_events

    def add(self, other: ReadStats) -> None:
        """Count ``other``'s reads in too."""
        self.messages += other.messages
        self.events += other.events
        self.bad_messages += other.bad_messages
        self.bad_events += other.bad_events
        self.codes.update(other.codes)
        self.last_error = other.last_error or self.last_error

    def summary(self) -> str:
        """One line for a user: what was skipped and why (empty when nothing was)."""
        if not self.skipped:
            return ""
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.codes.items()))
        return (
            f"skipped {self.bad_messages} unreadable trace message(s) and {self.bad_events} bad "
            f"event record(s) ({codes}); last: {self.last_error}"
        )


def read_events(data: bytes, stats: ReadStats, *, seq: int | None = None) -> list[Event]:
    """The good events of one stream message; bad ones are skipped, logged and counted."""
    stats.messages += 1
    where = f"stream seq {seq}: " if seq is not None else ""
    try:
        batch = decode_trace_message(data)
    except WireError as exc:
        stats.bad_messages += 1
        _skipped(stats, exc, f"{where}message skipped: {exc}")
        return []
    for error in batch.errors:
        stats.bad_events += 1
        _skipped(stats, error, f"{where}event skipped: {error}")
    stats.events += len(batch.events)
    return batch.events


def _skipped(stats: ReadStats, exc: WireError, reason: str) -> None:
    stats.codes[exc.code] += 1
    stats.last_error = reason
    if stats.skipped in (1, 10, 100) or stats.skipped % 1000 == 0:
        log.warning("traces.bad_record", code=exc.code, reason=reason, skipped=stats.skipped)


async def replay(
    bus: Bus,
    subjects: Subjects,
    *,
    start_seq: int = 1,
    idle_s: float = 0.5,
    limit: int = 100_000,
    stats: ReadStats | None = None,
) -> list[Event]:
    """Read stored trace events from ``start_seq`` on, until the stream is idle for ``idle_s``.

    Bad messages and records are skipped and counted in ``stats``, never raised."""
    stats = stats if stats is not None else ReadStats()
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    sub = await bus.js.subscribe(subjects.trace_wildcard, ordered_consumer=True, config=config)
    events: list[Event] = []
    try:
        while len(events) < limit:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except Exception:  # nats TimeoutError: the stream is drained
                break
            events.extend(read_events(msg.data, stats, seq=_stream_seq(msg)))
    finally:
        await sub.unsubscribe()
    return events


def _stream_seq(msg: Any) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream message
        return None
