"""Trace emission: batched, acknowledged, split to fit the payload limit, never blocking."""

from __future__ import annotations

import time

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import TraceEmitter, ensure_trace_stream, replay
from hieramas.wire import Subjects


def test_bursts_are_batched_split_to_fit_and_replayed_in_order() -> None:
    with NatsServer(max_payload=8 * 1024) as server:
        bus = Bus(NatsSettings(url=server.url)).start()
        try:
            subjects = Subjects()
            bus.call(ensure_trace_stream(bus, subjects), 10)
            emitter = TraceEmitter(bus, subjects, linger_s=0.05)
            emitter.start()
            for i in range(300):
                emitter.emit({"event": "llm_call", "i": i, "text": "x" * 100})
            emitter.emit({"event": "query", "i": -1})
            emitter.emit({"event": "llm_call", "i": 999, "text": "y" * 20_000})  # alone > 8 KiB
            bus.call(emitter.flush(), 10)
            events = bus.call(replay(bus, subjects), 10)
            info = bus.call(bus.js.stream_info("HIERAMAS_TRACES"), 10)
        finally:
            bus.stop()
    calls = [e["i"] for e in events if e["event"] == "llm_call"]
    assert calls == list(range(300))  # all delivered, in order; the oversize one is not
    assert [e["i"] for e in events if e["event"] == "query"] == [-1]
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
            emitter.emit({"event": "llm_call", "i": i})
        bus.call(emitter.flush(timeout=0.2), 5)  # nobody pumps: gives up after its timeout
        emitter.start()
        bus.call(emitter.flush(), 10)
        events = bus.call(replay(bus, subjects), 10)
        bus.call(emitter.flush(), 10)  # idle: returns at once
    finally:
        bus.stop()
    assert emitter.counters["dropped"] == 5
    assert [e["i"] for e in events] == list(range(10))  # the first ten, kept in order
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
