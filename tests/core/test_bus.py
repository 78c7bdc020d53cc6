"""The bus bridge's connection bookkeeping, against a real nats-server."""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Any

import nats.errors
import pytest

from hieramas.bus import Bus, BusError, RemoteError, error_envelope
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.wire import Envelope, Kind, WireError, decode, encode


def test_our_own_close_is_not_counted_as_a_disconnect(nats_server: NatsServer) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    bus.stop()
    assert bus.counters["disconnected"] == 0


def test_a_server_that_goes_away_is_counted_as_a_disconnect() -> None:
    server = NatsServer().start()
    bus = Bus(NatsSettings(url=server.url)).start()
    try:
        server.stop()
        deadline = time.monotonic() + 10
        while bus.counters["disconnected"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bus.counters["disconnected"] == 1
    finally:
        bus.stop(timeout=2)
        server.stop()


def test_a_refused_login_outlives_the_reset_of_a_retry() -> None:
    """nats-py retries a failed connect; the server's reset of the retry must not hide the cause."""
    bus = Bus(NatsSettings(url="nats://127.0.0.1:1"))
    errors: list[Exception] = [
        nats.errors.Error("nats: 'Authorization Violation'"),
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    for error in errors:
        asyncio.run(bus._on_error(error))
    assert "Authorization Violation" in bus.connect_failure(TimeoutError())
    plain = Bus(NatsSettings(url="nats://127.0.0.1:1"))
    asyncio.run(plain._on_error(ConnectionRefusedError(111, "Connect call failed")))
    assert "Connect call failed" in plain.connect_failure(TimeoutError())
    assert plain.connect_failure(TimeoutError()) != bus.connect_failure(TimeoutError())
    bus.loop.close()  # never started: only the loop object to release
    plain.loop.close()


# -- request/reply ----------------------------------------------------------------------


def _echo_bus(nats_server: NatsServer) -> Bus:
    """A bus that serves ``echo`` (answers with the payload), ``fail`` (an error reply),
    ``garble`` (bytes that are no envelope), ``slow`` (answers after 0.3 s) and ``hole``
    (never answers)."""
    bus = Bus(NatsSettings(url=nats_server.url)).start()

    async def serve() -> None:
        nc = bus.nc

        async def echo(msg: Any) -> None:
            env = decode(msg.data)
            await nc.publish(
                msg.reply,
                encode(
                    env.reply(Kind.CONFIG_REPLY, {"status": "ok", **env.payload}, sender="echo")
                ),
            )

        async def fail(msg: Any) -> None:
            await nc.publish(msg.reply, encode(error_envelope("nope", "refused", sender="t")))

        async def garble(msg: Any) -> None:
            await nc.publish(msg.reply, b"\xc1\xc1")

        async def slow(msg: Any) -> None:
            await asyncio.sleep(0.3)
            await echo(msg)

        async def hole(msg: Any) -> None:  # takes the request, never answers
            pass

        handlers = {"echo": echo, "fail": fail, "garble": garble, "slow": slow, "hole": hole}
        for subject, cb in handlers.items():
            await nc.subscribe(subject, cb=cb)
        await nc.flush()

    bus.call(serve(), 5)
    return bus


def _ask(bus: Bus, subject: str, timeout: float = 2.0) -> Envelope | BaseException:
    """One callback request from a non-loop thread; the outcome as the callback saw it."""
    got: queue.Queue[Envelope | BaseException] = queue.Queue()
    bus.request(subject, Envelope(kind=Kind.CONFIG_GET, payload={"n": 7}), timeout, got.put)
    return got.get(timeout=timeout + 5)


def test_requests_resolve_with_the_reply_or_a_typed_error(nats_server: NatsServer) -> None:
    bus = _echo_bus(nats_server)
    try:
        reply = _ask(bus, "echo")
        assert isinstance(reply, Envelope) and reply.payload["n"] == 7
        failed = _ask(bus, "fail")
        assert isinstance(failed, RemoteError) and failed.code == "nope"
        garbled = _ask(bus, "garble")
        assert isinstance(garbled, WireError) and garbled.code == "garbled"
        nobody = _ask(bus, "nobody.listens")
        assert isinstance(nobody, BusError) and nobody.code == "no_responders"
        late = _ask(bus, "slow", timeout=0.05)
        assert isinstance(late, BusError) and late.code == "timeout"
        deadline = time.monotonic() + 5
        while bus.counters["late_reply"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bus.counters["late_reply"] == 1  # the answer after the timeout is dropped, counted
        assert not bus._pending  # nothing left waiting
        # ...and the async form raises the same errors
        with pytest.raises(RemoteError):
            bus.call(bus.arequest("fail", Envelope(kind=Kind.CONFIG_GET, payload={}), 2), 5)
    finally:
        bus.stop()


def test_oversize_requests_and_closing_resolve_pending_callbacks(nats_server: NatsServer) -> None:
    bus = _echo_bus(nats_server)
    huge = Envelope(kind=Kind.CONFIG_GET, payload={"blob": b"x" * (bus.max_payload + 1)})
    got: queue.Queue[Envelope | BaseException] = queue.Queue()
    bus.request("echo", huge, 2, got.put)
    oversize = got.get(timeout=5)
    assert isinstance(oversize, WireError) and oversize.code == "oversize"
    bus.request("hole", Envelope(kind=Kind.CONFIG_GET, payload={}), 30, got.put)
    time.sleep(0.05)
    bus.stop()
    closed = got.get(timeout=5)  # not left hanging until its 30 s timeout
    assert isinstance(closed, BusError)
    assert closed.code == "closed"


def test_spawn_eager_runs_until_the_first_suspension_then_a_task_carries_on(
    nats_server: NatsServer,
) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    steps: list[str] = []
    release = asyncio.Event()

    async def quick() -> None:
        steps.append("quick")

    async def waits() -> str:
        steps.append("waits: before")
        await release.wait()
        steps.append("waits: after")
        return "done"

    async def failing() -> None:
        raise RuntimeError("boom")

    async def drive() -> list[str]:
        bus.spawn_eager(quick())
        bus.spawn_eager(waits())
        bus.spawn_eager(failing())  # logged, not raised into the caller
        seen = list(steps)  # before this coroutine yields to the loop even once
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        return seen

    try:
        assert bus.call(drive(), 5) == ["quick", "waits: before"]
        assert steps == ["quick", "waits: before", "waits: after"]
        assert bus.counters["coroutine_failed"] == 1
    finally:
        bus.stop()


def test_publishes_from_the_loop_arrive_in_order(nats_server: NatsServer) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    got: list[int] = []
    done = asyncio.Event()

    def on_message(envelope: Envelope, reply: str | None) -> None:
        got.append(int(envelope.payload["i"]))
        if len(got) == 500:
            done.set()

    async def drive() -> None:
        await bus.asubscribe("order", on_message)
        for i in range(500):
            bus.publish("order", Envelope(kind=Kind.CONFIG_GET, payload={"i": i}))
        await asyncio.wait_for(done.wait(), 5)

    try:
        bus.call(drive(), 10)
        assert got == list(range(500))
    finally:
        bus.stop()


# -- locality-aware delivery ------------------------------------------------------------


def test_subjects_served_in_process_behave_as_over_nats(nats_server: NatsServer) -> None:
    """A request or publish to a subject this process serves locally never reaches NATS (a
    NATS subscriber on it sees nothing) but resolves as it would over NATS: the reply, an
    error reply, a timeout, the payload limit, a handler that raises; and a subject no
    longer served goes over NATS again."""
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    seen_on_nats: list[str] = []
    handled: list[tuple[Envelope, str | None]] = []

    def serve(envelope: Envelope, reply: str | None) -> None:
        handled.append((envelope, reply))
        what = envelope.payload.get("do")
        if what == "raise":
            raise RuntimeError("boom")
        if reply is None or what == "hole":
            return
        if what == "fail":
            bus.publish(reply, error_envelope("nope", "refused", sender="t"))
        else:
            answer = envelope.reply(
                Kind.CONFIG_REPLY, {"status": "ok", **envelope.payload}, sender="t"
            )
            bus.publish(reply, answer)

    async def tap() -> None:
        async def on(msg: Any) -> None:
            seen_on_nats.append(msg.subject)

        await bus.nc.subscribe("local.>", cb=on)
        await bus.nc.flush()

    try:
        bus.call(tap(), 5)
        bus.serve_locally("local.echo", serve)
        bus.serve_locally("local.inbox", serve)

        def ask(payload: dict[str, Any], timeout: float = 2.0) -> Envelope | BaseException:
            got: queue.Queue[Envelope | BaseException] = queue.Queue()
            bus.request(
                "local.echo", Envelope(kind=Kind.CONFIG_GET, payload=payload), timeout, got.put
            )
            return got.get(timeout=timeout + 5)

        reply = ask({"n": 7})
        assert isinstance(reply, Envelope) and reply.payload["n"] == 7
        assert handled[-1][1] is not None  # the handler got a reply subject, as over NATS
        failed = ask({"do": "fail"})
        assert isinstance(failed, RemoteError) and failed.code == "nope"
        late = ask({"do": "hole"}, timeout=0.1)
        assert isinstance(late, BusError) and late.code == "timeout"
        crashed = ask({"do": "raise"})
        assert isinstance(crashed, RemoteError) and crashed.code == "internal"
        huge = ask({"blob": b"x" * (bus.max_payload + 1)})
        assert isinstance(huge, WireError) and huge.code == "oversize"
        with pytest.raises(WireError):
            bus.publish(
                "local.inbox",
                Envelope(kind=Kind.CONFIG_GET, payload={"blob": b"x" * (bus.max_payload + 1)}),
            )
        # nested records arrive as maps, as decoded from NATS
        bus.publish("local.inbox", Envelope(kind=Kind.CONFIG_GET, payload={"t": (1, 2)}))
        deadline = time.monotonic() + 15
        while handled[-1][0].payload.get("t") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled[-1][0].payload["t"] == [1, 2] and handled[-1][1] is None
        assert bus.counters["local.delivered"] == 5 and bus.counters["local.replies"] >= 3
        assert not bus._pending
        bus.stop_serving_locally(["local.echo"])
        bus.publish("local.echo", Envelope(kind=Kind.CONFIG_GET, payload={}))
        deadline = time.monotonic() + 15
        while not seen_on_nats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen_on_nats == ["local.echo"]  # only once no longer served here
    finally:
        bus.stop()


def test_a_message_handed_over_in_process_is_the_receivers_own(nats_server: NatsServer) -> None:
    """What a locally served handler gets is a copy taken when it was sent: the sender
    changing its payload afterwards (before the handler runs, a loop turn later) changes
    nothing the handler sees, a reply the same; over the payload limit is ``oversize``,
    for a publish, a request and a reply alike."""
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    got: queue.Queue[tuple[Envelope, str | None]] = queue.Queue()
    replies: queue.Queue[Envelope | BaseException] = queue.Queue()
    failures: list[BaseException] = []

    def serve(envelope: Envelope, reply: str | None) -> None:
        got.put((envelope, reply))
        if reply is None:
            return
        body: dict[str, Any] = {"status": "ok", "items": ["answer"]}
        if envelope.payload.get("huge"):
            body["blob"] = b"x" * (bus.max_payload + 1)
        answer = envelope.reply(Kind.CONFIG_REPLY, body, sender="t")
        try:
            bus.publish(reply, answer)
        except WireError as exc:
            failures.append(exc)
            raise
        body["items"].append("changed after the reply")

    async def send_then_change() -> None:  # on the loop: the handler runs a turn later
        items = ["original"]
        bus.publish("local.mine", Envelope(kind=Kind.CONFIG_GET, payload={"items": items}))
        items.append("changed after the publish")
        payload: dict[str, Any] = {"items": ["asked"]}
        bus.request("local.mine", Envelope(kind=Kind.CONFIG_GET, payload=payload), 5, replies.put)
        payload["items"].append("changed after the request")

    try:
        bus.serve_locally("local.mine", serve)
        bus.call(send_then_change(), 5)
        published, _ = got.get(timeout=10)
        asked, reply_to = got.get(timeout=10)
        assert published.payload["items"] == ["original"]
        assert asked.payload["items"] == ["asked"] and reply_to is not None
        answer = replies.get(timeout=10)
        assert isinstance(answer, Envelope) and answer.payload["items"] == ["answer"]
        with pytest.raises(WireError) as oversize:
            bus.publish("local.mine", Envelope(kind=Kind.CONFIG_GET, payload={"blob": b"x" * (bus.max_payload + 1)}))  # fmt: skip
        assert oversize.value.code == "oversize"
        bus.request("local.mine", Envelope(kind=Kind.CONFIG_GET, payload={"huge": True}), 5, replies.put)  # fmt: skip
        refused = replies.get(timeout=10)  # the handler's reply could not be sent: an error reply
        assert isinstance(refused, RemoteError) and refused.code == "internal"
        assert [getattr(exc, "code", None) for exc in failures] == ["oversize"]
        assert bus.counters["local.delivered"] == 3
    finally:
        bus.stop()
