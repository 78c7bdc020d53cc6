"""LoopActor: pykka actors drained by an asyncio loop instead of a thread each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from hieramas.actors.dispatch import DISPATCH_ENV, LoopActor, dispatch_mode


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class Recorder(LoopActor):
    def __init__(self, loop: asyncio.AbstractEventLoop, peer: pykka.ActorRef[Any] | None = None):
        super().__init__(loop)
        self.peer = peer
        self.seen: list[tuple[Any, int]] = []
        self.started_on: int | None = None
        self.stopped = threading.Event()

    def on_start(self) -> None:
        self.started_on = threading.get_ident()

    def on_stop(self) -> None:
        self.stopped.set()

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        if message == "threads":
            return [t for _, t in self.seen]
        if message == "seen":
            return [m for m, _ in self.seen]
        self.seen.append((message, threading.get_ident()))
        if self.peer is not None and isinstance(message, int):
            self.peer.tell(message * 10)  # a tell from the loop thread to another actor
        return message


def loop_thread(loop: asyncio.AbstractEventLoop) -> int:
    return asyncio.run_coroutine_threadsafe(_ident(), loop).result(5)


async def _ident() -> int:
    return threading.get_ident()


def test_messages_are_handled_in_order_on_the_loop_thread(loop: asyncio.AbstractEventLoop) -> None:
    sink = Recorder.start(loop)
    source = Recorder.start(loop, sink)
    for i in range(300):  # more than one drain batch
        source.tell(i)
    assert source.ask("seen", timeout=5) == list(range(300))
    assert sink.ask("seen", timeout=5) == [i * 10 for i in range(300)]
    threads = set(source.ask("threads", timeout=5)) | set(sink.ask("threads", timeout=5))
    assert threads == {loop_thread(loop)}
    assert source.proxy().started_on.get(timeout=5) == loop_thread(loop)
    pykka.ActorRegistry.stop_all()


def test_stop_runs_on_stop_and_later_tells_fail(loop: asyncio.AbstractEventLoop) -> None:
    ref = Recorder.start(loop)
    actor = ref._actor_weakref()
    assert actor is not None
    ref.stop(block=True, timeout=5)
    assert actor.stopped.is_set()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")


def test_an_exception_in_ask_goes_to_the_caller_and_the_actor_lives(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ref = Recorder.start(loop)
    with pytest.raises(RuntimeError, match="boom"):
        ref.ask("boom", timeout=5)
    assert ref.ask(7, timeout=5) == 7
    ref.stop()


def test_an_exception_in_tell_stops_the_actor_as_pykka_does(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ref = Recorder.start(loop)
    ref.tell("boom")
    ref.actor_stopped.wait(5)
    assert not ref.is_alive()


def test_threads_mode_gives_each_actor_a_thread(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISPATCH_ENV, "threads")
    assert dispatch_mode() == "threads"
    ref = Recorder.start(loop)
    ref.tell(1)
    (thread,) = ref.ask("threads", timeout=5)
    assert thread not in (loop_thread(loop), threading.get_ident())
    ref.stop(block=True, timeout=5)


def test_bad_dispatch_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISPATCH_ENV, "fibres")
    with pytest.raises(ValueError, match="'loop' or 'threads'"):
        dispatch_mode()


def test_after_the_loop_stops_a_stop_request_is_still_answered() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ref = Recorder.start(loop)
    assert ref.ask(1, timeout=5) == 1
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    ref.stop(block=True, timeout=5)  # handled on this thread: no hang
    assert not ref.is_alive()
    loop.close()


class Nester(LoopActor):
    """Logs when each of its handlers starts and ends; "first" tells itself and its peer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, log: list[str], peer: pykka.ActorRef[Any] | None
    ) -> None:
        super().__init__(loop)
        self.log = log
        self.peer = peer

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return None
        self.log.append(f"start {message}")
        if message == "first":
            self.actor_ref.tell("second")  # told from inside a handler
            if self.peer is not None:
                self.peer.tell("from a handler")
        self.log.append(f"end {message}")
        return None


def test_a_tell_from_a_loop_callback_is_handled_before_the_callback_returns(
    loop: asyncio.AbstractEventLoop,
) -> None:
    log: list[str] = []
    peer_log: list[str] = []
    peer = Nester.start(loop, peer_log, None)
    actor = Nester.start(loop, log, peer)
    actor.ask("ping", timeout=5)  # both started and bound to the loop
    peer.ask("ping", timeout=5)
    seen: list[tuple[list[str], list[str]]] = []

    async def callback() -> None:  # a plain loop callback, as a NATS delivery is
        actor.tell("first")
        seen.append((list(log), list(peer_log)))

    asyncio.run_coroutine_threadsafe(callback(), loop).result(5)
    # handled inside the callback, one message at a time; the peer, told from a handler,
    # waits for a later loop turn: handlers never nest
    assert seen == [(["start first", "end first", "start second", "end second"], [])]
    peer.ask("ping", timeout=5)
    assert peer_log == ["start from a handler", "end from a handler"]
    pykka.ActorRegistry.stop_all()
