"""Direct delivery of NATS messages to a handler, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import nats
from nats.aio.msg import Msg

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsdelivery import deliver_directly
from hieramas.natsserver import NatsServer
from hieramas.wire import Envelope, Kind


def test_messages_reach_the_handler_inside_the_reading_task_in_order(
    nats_server: NatsServer,
) -> None:
    async def scenario() -> tuple[list[int], list[bool], Counter[str], int, int]:
        nc = await nats.connect(nats_server.url)
        counters: Counter[str] = Counter()
        seen: list[int] = []
        in_reader: list[bool] = []
        done = asyncio.Event()

        def handle(msg: Msg) -> None:
            seen.append(int(msg.data))
            in_reader.append(asyncio.current_task() is nc._reading_task)
            if int(msg.data) == 13:
                raise RuntimeError("a handler bug")  # must not stop the reader
            if len(seen) == 2000:
                done.set()

        async def via_nats_py(msg: Msg) -> None:
            handle(msg)

        sub = await nc.subscribe("direct", cb=via_nats_py)
        assert deliver_directly(sub, handle, counters)
        for i in range(2000):
            await nc.publish("direct", str(i).encode())
        await asyncio.wait_for(done.wait(), 10)
        pending = (sub.pending_msgs, sub.pending_bytes)
        await nc.drain()  # drain waits on the pending queue: it must not hang
        return seen, in_reader, counters, *pending

    seen, in_reader, counters, pending_msgs, pending_bytes = asyncio.run(scenario())
    assert seen == list(range(2000))
    assert all(in_reader)  # not nats-py's per-subscription task
    assert counters["delivery_failed"] == 1
    assert (pending_msgs, pending_bytes) == (0, 0)  # never mistaken for a slow consumer


def test_unsubscribing_stops_direct_delivery(nats_server: NatsServer) -> None:
    async def scenario() -> list[bytes]:
        nc = await nats.connect(nats_server.url)
        got: list[bytes] = []

        async def unused(msg: Msg) -> None:
            raise AssertionError("nats-py's own delivery ran")

        sub = await nc.subscribe("gone", cb=unused)
        assert deliver_directly(sub, lambda msg: got.append(msg.data), Counter())
        await nc.publish("gone", b"before")
        await nc.flush()
        await asyncio.sleep(0.05)
        await sub.unsubscribe()
        await nc.publish("gone", b"after")
        await nc.flush()
        await asyncio.sleep(0.05)
        await nc.close()
        return got

    assert asyncio.run(scenario()) == [b"before"]


def test_a_message_queued_before_the_swap_still_reaches_the_callback(
    nats_server: NatsServer,
) -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], int]:
        nc = await nats.connect(nats_server.url)
        got: list[tuple[str, bytes]] = []
        done = asyncio.Event()

        def note(path: str, msg: Msg) -> None:
            got.append((path, msg.data))
            if len(got) == 3:
                done.set()

        async def via_nats_py(msg: Msg) -> None:
            note("callback", msg)

        sub = await nc.subscribe("early", cb=via_nats_py)
        sub._pending_queue.put_nowait(Msg(nc, subject="early", data=b"queued"))  # as if parsed
        assert deliver_directly(sub, lambda msg: note("direct", msg), Counter())
        await nc.publish("early", b"one")
        await nc.publish("early", b"two")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.05)
        await nc.close()
        return got, sub.pending_msgs

    got, pending = asyncio.run(scenario())
    assert [data for _, data in got] == [b"queued", b"one", b"two"]  # each once, in order
    assert [path for path, _ in got][1:] == ["direct", "direct"]
    assert pending == 0


def test_a_message_parsed_before_nats_py_ran_goes_out_first_and_once(
    nats_server: NatsServer,
) -> None:
    """nats-py flushed inline while subscribing, and a message arrived before its task ever ran."""

    async def scenario() -> list[tuple[str, bytes]]:
        nc = await nats.connect(nats_server.url)
        got: list[tuple[str, bytes]] = []

        async def via_nats_py(msg: Msg) -> None:
            got.append(("callback", msg.data))

        sub = await nc.subscribe("early2", cb=via_nats_py)
        sub._pending_queue.put_nowait(Msg(nc, subject="early2", data=b"queued"))
        assert deliver_directly(sub, lambda msg: got.append(("direct", msg.data)), Counter())
        sub._pending_queue.put_nowait(Msg(nc, subject="early2", data=b"next"))  # as if parsed
        await asyncio.sleep(0.05)  # nats-py's task runs now: nothing is left for it
        await nc.drain()
        return got

    assert asyncio.run(scenario()) == [("direct", b"queued"), ("direct", b"next")]


def test_an_unfamiliar_subscription_keeps_nats_py_delivery() -> None:
    class Other:
        _pending_queue: Any = object()
        _pending_size = 0

    other = Other()
    queue_before = other._pending_queue
    assert not deliver_directly(other, lambda msg: None, Counter())
    assert other._pending_queue is queue_before
    assert not deliver_directly(object(), lambda msg: None, Counter())


def test_bus_handlers_and_replies_are_delivered_directly(nats_server: NatsServer) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    # the responder on its own connection: a reply to the same connection's request is
    # resolved in process (Bus.serve_locally), never crossing NATS
    server = Bus(NatsSettings(url=nats_server.url)).start()
    tasks: list[asyncio.Task[Any] | None] = []
    replies: asyncio.Queue[Envelope | BaseException] = asyncio.Queue()

    def answer(envelope: Envelope, reply: str | None) -> None:
        tasks.append(asyncio.current_task())
        assert reply is not None
        server.publish(reply, envelope.reply(Kind.CONFIG_REPLY, {"status": "ok"}, sender="t"))

    def on_reply(outcome: Envelope | BaseException) -> None:
        tasks.append(asyncio.current_task())
        replies.put_nowait(outcome)

    async def drive() -> Envelope | BaseException:
        bus.request("ask", Envelope(kind=Kind.CONFIG_GET, payload={}), 5, on_reply)
        return await asyncio.wait_for(replies.get(), 5)

    try:
        server.call(server.asubscribe("ask", answer), 10)
        server.call(server.nc.flush(), 10)
        outcome = bus.call(drive(), 10)
        assert isinstance(outcome, Envelope) and outcome.payload["status"] == "ok"
        assert tasks == [server.nc._reading_task, bus.nc._reading_task]
    finally:
        bus.stop()
        server.stop()
