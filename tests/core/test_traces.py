"""Trace emission: batched, acknowledged, split to fit the payload limit, never blocking."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import msgspec

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import ReadStats, TraceEmitter, ensure_trace_stream, replay
from hieramas.wire import Envelope, Kind, Subjects, encode
from hieramas.wire.events import Feedback, QueryDone


def _feedback(i: int, comment: str | None = None) -> Feedback:
    return Feedback(query_id=f"q{i}", score=float(i), source="test", comment=comment)


def test_bursts_are_batched_split_to_fit_and_replayed_in_order() -> None:
    with NatsServer(max_payload=8 * 1024) as server:
        bus = Bus(NatsSettings(url=server.url)).start()
        try:
            subjects = Subjects()
            bus.call(ensure_trace_stream(bus, subjects), 10)
            emitter = TraceEmitter(bus, subjects, linger_s=0.05)
            emitter.start()
            for i in range(300):
                emitter.emit(_feedback(i, "x" * 100))
            emitter.emit(QueryDone(query_id="-1", status="ok"))
            emitter.emit(_feedback(999, "y" * 20_000))  # alone > 8 KiB
            bus.call(emitter.flush(), 10)
            events = bus.call(replay(bus, subjects), 10)
            info = bus.call(bus.js.stream_info("HIERAMAS_TRACES"), 10)
        finally:
            bus.stop()
    scores = [e.score for e in events if isinstance(e, Feedback)]
    assert scores == list(range(300))  # all delivered, in order; the oversize one is not
    assert [e.query_id for e in events if isinstance(e, QueryDone)] == ["-1"]
    assert emitter.counters["published"] == 301
    assert emitter.counters["failed"] == 1
    assert 1 < info.state.messages < 100  # batched: far fewer messages than events


def test_a_full_buffer_drops_and_counts_and_flush_waits_for_the_rest(
    nats_server: NatsServer,
) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        subjects = Subjects()
        bus.call(ensure_trace_stream(bus, subjects), 10)
        emitter = TraceEmitter(bus, subjects, capacity=10, linger_s=0.05)
        for i in range(15):  # nothing publishes yet: the buffer fills
            emitter.emit(_feedback(i))
        bus.call(emitter.flush(timeout=0.2), 5)  # nobody pumps: gives up after its timeout
        emitter.start()
        bus.call(emitter.flush(), 10)
        events = bus.call(replay(bus, subjects), 10)
        bus.call(emitter.flush(), 10)  # idle: returns at once
    finally:
        bus.stop()
    assert emitter.counters["dropped"] == 5
    assert [e.score for e in events if isinstance(e, Feedback)] == list(range(10))  # kept in order
    assert emitter.counters["published"] == 10


def test_queries_still_answer_while_trace_publishing_fails(
    nats_server: NatsServer, llm_url: str
) -> None:
    from hieramas.controller.client import HieraClient
    from hieramas.stack import Stack
    from hieramas.traces import TRACE_STREAM
    from support import config_yaml, node

    cfg = config_yaml(llm_url, {"a": node("Critic", ["fixed:B", "fixed:B"], "fixed:B")})
    with Stack(nats_url=nats_server.url) as stack:
        assert stack.bus is not None
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(cfg), 10)
        stack.bus.call(stack.bus.js.delete_stream(TRACE_STREAM), 10)  # nowhere to store traces
        results = [stack.bus.call(client.ask("Which option?"), 30) for _ in range(3)]
        traces = stack.workers[0].ctx.traces
        deadline = time.monotonic() + 10
        while traces.counters["failed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [r["status"] for r in results] == ["ok"] * 3
    assert [r["answer"] for r in results] == ["B"] * 3
    assert traces.counters["failed"] > 0  # counted, not raised into the queries
    assert traces.counters["published"] == 0


def _garbage_in_the_stream(url: str) -> list[Feedback]:
    """A stream with good events, a garbage message, a foreign envelope, a batch with one bad
    record among good ones, and garbage last; the good events, in stream order."""
    bus = Bus(NatsSettings(url=url)).start()
    subjects = Subjects()
    good = [_feedback(i) for i in range(8)]

    def batch(records: list[object]) -> bytes:
        return encode(Envelope(kind=Kind.TRACE, payload={"events": records}))

    def plain(event: Feedback) -> object:
        return msgspec.to_builtins(event)

    try:
        bus.call(ensure_trace_stream(bus, subjects), 10)
        for data in (
            batch([plain(e) for e in good[:3]]),
            b"\x00\xffnot a message",
            encode(Envelope(kind=Kind.QUERY, payload={"text": "lost?"})),
            batch([plain(good[3]), {"event": "feedback", "query_id": "q"}, plain(good[4])]),
            batch([plain(e) for e in good[5:]]),
            b"garbage at the very end",
        ):
            bus.call(bus.js.publish(subjects.trace("feedback"), data), 10)
    finally:
        bus.stop()
    return good


def test_readers_skip_count_and_report_bad_messages_and_records(nats_server: NatsServer) -> None:
    good = _garbage_in_the_stream(nats_server.url)
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        stats = ReadStats()
        events = bus.call(replay(bus, Subjects(), stats=stats), 10)
    finally:
        bus.stop()
    assert events == good
    assert (stats.messages, stats.events) == (6, 8)
    assert (stats.bad_messages, stats.bad_events) == (3, 1)
    assert stats.codes == {"garbled": 2, "kind": 1, "bad_event": 1}
    assert "stream seq 6" in stats.last_error
    assert "skipped 3 unreadable trace message(s) and 1 bad event record(s)" in stats.summary()


def test_traces_tail_prints_the_last_events_around_garbage_and_says_what_it_skipped(
    nats_server: NatsServer,
) -> None:
    good = _garbage_in_the_stream(nats_server.url)
    command = ["traces", "tail", "--nats", nats_server.url, "--last", "5"]
    tail = subprocess.run(
        [sys.executable, "-m", "hieramas", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["query_id"] for line in lines] == [e.query_id for e in good[-5:]]
    assert all(line["event"] == "feedback" for line in lines)
    assert "skipped" in tail.stderr and "unreadable trace message" in tail.stderr
