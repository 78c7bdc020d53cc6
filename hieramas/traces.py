"""Trace events: one per LLM call, per supernode run and per query, into a JetStream stream.

Emitting never blocks or fails the query path: :meth:`TraceEmitter.emit`
queues the event (dropping and counting when the queue is full) and a
background task publishes it with JetStream acknowledgements, so an event is
durable once accepted.  Anyone can replay the stream (the learner, a monitor,
``hieramas traces tail``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
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

from hieramas.bus import Bus
from hieramas.wire import Envelope, Kind, Subjects, decode

__all__ = [
    "TRACE_STREAM",
    "TraceEmitter",
    "ensure_trace_stream",
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
    """Create (or update) the trace stream; idempotent, safe from several processes."""
    config = StreamConfig(
        name=TRACE_STREAM,
        subjects=[subjects.trace_wildcard],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        max_bytes=max_bytes,
    )
    try:
        await bus.js.add_stream(config)
    except Exception:
        await bus.js.update_stream(config)


class TraceEmitter:
    """A bounded, non-blocking publisher of trace events for one process."""

    def __init__(self, bus: Bus, subjects: Subjects, *, capacity: int = 50_000) -> None:
        self.bus = bus
        self.subjects = subjects
        self.counters: Counter[str] = Counter()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background publisher (call from any thread once the bus runs)."""

        def _start() -> None:
            self._task = self.bus.loop.create_task(self._pump())

        self.bus.loop.call_soon_threadsafe(_start)

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event from any thread; never raises, never blocks."""
        if self.bus.in_loop():
            self._put(event)
        else:
            self.bus.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counters["dropped"] += 1

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (on the loop) until queued events are published and acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
            await asyncio.wait_for(self.bus.js.publish_async_completed(), deadline - loop.time())
        except TimeoutError:
            log.warning("traces.flush_timeout", pending=self.bus.js.publish_async_pending())

    async def _pump(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._publish(event)
            finally:
                self._queue.task_done()

    async def _publish(self, event: dict[str, Any]) -> None:
        kind = str(event.get("event", "event"))
        envelope = Envelope(
            kind=Kind.TRACE,
            payload={"event": event},
            query_id=str(event.get("query_id", "")),
            trace_id=str(event.get("trace_id", "")),
            span_id=str(event.get("span_id", "")),
            config_version=int(event.get("config_version", 0) or 0),
            sender=self.bus.sender,
        )
        try:
            data = self.bus.encode(envelope)
            ack = await self.bus.js.publish_async(self.subjects.trace(kind), data, wait_stall=1.0)
        except Exception as exc:  # best effort: count, log, carry on
            self._failed(exc)
            return
        ack.add_done_callback(self._on_ack)

    def _on_ack(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._failed(future.exception() or RuntimeError("cancelled"))
        else:
            self.counters["published"] += 1

    def _failed(self, exc: BaseException) -> None:
        self.counters["failed"] += 1
        if self.counters["failed"] in (1, 10, 100) or self.counters["failed"] % 1000 == 0:
            log.warning("traces.publish_failed", error=str(exc), failures=self.counters["failed"])


async def replay(
    bus: Bus, subjects: Subjects, *, start_seq: int = 1, idle_s: float = 0.5, limit: int = 100_000
) -> list[dict[str, Any]]:
    """Read stored trace events from ``start_seq`` on, until the stream is idle for ``idle_s``."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    sub = await bus.js.subscribe(subjects.trace_wildcard, ordered_consumer=True, config=config)
    events: list[dict[str, Any]] = []
    try:
        while len(events) < limit:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except Exception:  # nats TimeoutError: the stream is drained
                break
            events.append(decode(msg.data).payload["event"])
    finally:
        await sub.unsubscribe()
    return events
