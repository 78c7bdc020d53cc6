"""``hieramas traces export``: the JetStream trace stream as OTLP spans.

A separate process reads the trace stream with its own durable pull consumer, turns each
event into spans (:mod:`hieramas.otelspans`) and sends them through the OpenTelemetry SDK's
OTLP/HTTP exporter, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables.  A batch
is acknowledged only once the backend accepted its spans, so the exporter resumes where it
stopped after a crash or a backend outage (at least once: a span sent twice has the same
ids).  A new consumer can start anywhere in the stream, so a new backend can be given the
stored history.  The query path pays nothing: workers and controllers only emit the events
they emit anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from hieramas import __version__, metrics
from hieramas.bus import Bus
from hieramas.otelspans import SpanRecord, span_records
from hieramas.traces import TRACE_STREAM, ReadStats, read_events
from hieramas.wire import Subjects

__all__ = [
    "CONTENT_ENV",
    "DURABLE",
    "ExportStats",
    "TraceExporter",
    "TraceStreamMissing",
    "content_opted_in",
    "otlp_configured",
    "readable_span",
]

log = structlog.get_logger(__name__)

DURABLE = "hieramas-otel-export"
"""The default durable consumer name (one per backend you export to)."""

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The GenAI instrumentations' opt-in for message content; ``true`` adds task and answers."""

_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_SCOPE = InstrumentationScope("hieramas.traces.export", __version__)
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


def otlp_configured() -> bool:
    """True when an OTLP endpoint is set: without one the exporter sends nothing anywhere."""
    return any(os.environ.get(name) for name in _ENDPOINT_ENVS)


def content_opted_in() -> bool:
    """True when ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``true``."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() in ("true", "1", "yes")


def readable_span(record: SpanRecord, resource: Resource) -> ReadableSpan:
    """The SDK span an exporter sends for ``record`` (its ids and times as they are)."""
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = None
    if record.parent_id is not None:
        parent = SpanContext(
            record.trace_id, record.parent_id, is_remote=record.parent_remote, trace_flags=flags
        )
    status = Status(StatusCode.ERROR, record.error) if record.error is not None else Status()
    return ReadableSpan(
        name=record.name,
        context=SpanContext(record.trace_id, record.span_id, is_remote=False, trace_flags=flags),
        parent=parent,
        resource=resource,
        attributes=record.attributes,
        kind=_KINDS[record.kind],
        status=status,
        start_time=record.start_ns,
        end_time=record.end_ns,
        instrumentation_scope=_SCOPE,
    )


@dataclass
class ExportStats:
    """What the exporter did: messages read, events turned into spans, spans accepted."""

    events: int = 0
    spans: int = 0
    batches: int = 0
    failed_exports: int = 0


class TraceStreamMissing(RuntimeError):
    """The trace stream did not appear within the exporter's wait."""


class TraceExporter:
    """Pulls trace messages from a durable consumer, exports their spans, then acknowledges.

    ``start``: ``"all"`` (the whole stored stream), ``"new"`` (from now), or a stream
    sequence number; it applies when the durable consumer is created (``reset`` recreates
    it), otherwise the consumer resumes after its last acknowledged message."""

    def __init__(
        self,
        bus: Bus,
        exporter: SpanExporter,
        *,
        subjects: Subjects | None = None,
        durable: str = DURABLE,
        start: str | int = "all",
        reset: bool = False,
        content: bool = False,
        resource: Resource | None = None,
        batch: int = 256,
        retry_max_s: float = 30.0,
    ) -> None:
        self.bus = bus
        self.exporter = exporter
        self.subjects = subjects or Subjects()
        self.durable = durable
        self.start = start
        self.reset = reset
        self.content = content
        self.resource = resource or Resource.create({"service.name": "hieramas"})
        self.batch = batch
        self.retry_max_s = retry_max_s
        self.stats = ExportStats()
        self.read = ReadStats()
        self.counters: Counter[str] = Counter()
        self.acked_seq = 0  # the stream sequence of the last acknowledged message
        self.lag: int | None = None  # messages left for the consumer after it (None: unknown)
        self._sub: Any = None
        metrics.track("exporter", self)

    async def open(self, *, stream_wait_s: float = 300.0) -> None:
        """Bind the durable consumer, creating it (at ``start``) if it is not there.

        An exporter may start before any controller has created the trace stream (it may not
        create it itself): it waits up to ``stream_wait_s`` for the stream, logging each try,
        then raises :class:`TraceStreamMissing`."""
        await self._wait_for_stream(stream_wait_s)
        js = self.bus.js
        exists = True
        try:
            await js.consumer_info(TRACE_STREAM, self.durable)
        except Exception:  # not found (or no stream yet: add_consumer says which)
            exists = False
        if exists and self.reset:
            await js.delete_consumer(TRACE_STREAM, self.durable)
            exists = False
        if not exists:
            await js.add_consumer(TRACE_STREAM, self._consumer_config())
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=TRACE_STREAM)
        log.info("export.open", durable=self.durable, created=not exists, start=str(self.start))

    async def _wait_for_stream(self, within_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        delay = 0.25
        while True:
            try:
                await self.bus.js.stream_info(TRACE_STREAM)
                return
            except NotFoundError:
                pass
            self.counters["stream_waits"] += 1
            if loop.time() + delay > deadline:
                raise TraceStreamMissing(
                    f"no trace stream {TRACE_STREAM} after {within_s:g} s: start the controller"
                    " (or `hieramas up`) on this NATS first"
                )
            log.info("export.waiting_for_stream", stream=TRACE_STREAM, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _consumer_config(self) -> ConsumerConfig:
        if self.start == "new":
            policy, seq = DeliverPolicy.NEW, None
        elif self.start == "all" or int(self.start) <= 1:
            policy, seq = DeliverPolicy.ALL, None
        else:
            policy, seq = DeliverPolicy.BY_START_SEQUENCE, int(self.start)
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=policy,
            opt_start_seq=seq,
            ack_policy=AckPolicy.ALL,
            ack_wait=300.0,
            max_ack_pending=-1,
            filter_subject=self.subjects.trace_wildcard,
            description="hieramas traces export (OTLP)",
        )

    async def run_once(self, timeout: float = 1.0) -> int:
        """Export one batch (waiting up to ``timeout`` for its first message); how many
        messages it held (0: none came).  A batch the backend refuses is sent again, with
        backoff, until it is accepted: nothing is acknowledged before that."""
        try:
            msgs: list[Any] = await self._sub.fetch(self.batch, timeout=timeout)
        except TimeoutError:  # nats' own, or a bare asyncio one
            return 0
        spans: list[ReadableSpan] = []
        for msg in msgs:
            seq, stored = _metadata(msg)
            for event in read_events(msg.data, self.read, seq=seq):
                self.stats.events += 1
                try:
                    records = span_records(event, content=self.content, fallback_time=stored)
                    spans.extend(readable_span(record, self.resource) for record in records)
                except Exception as exc:  # a value no span can hold: skip the event, go on
                    self.counters["unconvertible"] += 1
                    log.warning("export.unconvertible", seq=seq, event=event.event, error=str(exc))
        delay = 0.5
        while spans:
            result = await asyncio.to_thread(self.exporter.export, spans)
            if result is SpanExportResult.SUCCESS:
                break
            self.stats.failed_exports += 1
            if self.stats.failed_exports in (1, 10, 100) or self.stats.failed_exports % 1000 == 0:
                log.warning("export.failed", spans=len(spans), failures=self.stats.failed_exports)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)
        if msgs:
            await msgs[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
            self.acked_seq, self.lag = _position(msgs[-1], self.acked_seq)
        self.stats.spans += len(spans)
        self.stats.batches += 1
        return len(msgs)

    async def run(self, stopped: Callable[[], bool], *, idle_exit_s: float | None = None) -> None:
        """Export until ``stopped()`` (or, with ``idle_exit_s``, until the stream has been
        idle that long: a one-shot replay)."""
        idle = 0.0
        while not stopped():
            if await self.run_once(timeout=1.0):
                idle = 0.0
                continue
            idle += 1.0
            if idle_exit_s is not None and idle >= idle_exit_s:
                return

    async def close(self) -> None:
        """Stop pulling (the durable consumer stays, at the last acknowledged message)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


def _position(msg: Any, acked: int) -> tuple[int, int | None]:
    """A stream message's sequence and how many messages the consumer has left after it."""
    try:
        meta = msg.metadata
        return int(meta.sequence.stream), int(meta.num_pending)
    except Exception:
        return acked, None


def _metadata(msg: Any) -> tuple[int | None, float]:
    """A stream message's sequence and store time (Unix s), where it has them."""
    try:
        meta = msg.metadata
        return int(meta.sequence.stream), float(meta.timestamp.timestamp())
    except Exception:
        return None, 0.0
