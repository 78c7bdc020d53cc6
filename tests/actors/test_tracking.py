"""SlotCallTracker: redo of calls nobody took or whose taker was lost; no timer left behind."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from hieramas.actors.messages import Redo
from hieramas.actors.tracking import SlotCallTracker
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, ask, config_yaml, node


class LoopBus:
    """The parts of the bus the tracker uses, on the test's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.counters: Counter[str] = Counter()

    def on_loop(self, callback: Callable[..., object], *args: Any) -> None:
        callback(*args)  # the tests run on the loop


class Recorder:
    """Stands in for the supernode's actor ref: records what it is told."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


async def test_an_answered_call_leaves_no_timer_and_is_never_redone() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=0.05)  # type: ignore[arg-type]
    tracker.sent("q1", "n0", "p0", 1, ref)  # type: ignore[arg-type]
    tracker.finished("q1", "n0", "p0", 1)
    assert tracker._calls == {}
    await asyncio.sleep(0.1)
    assert ref.told == [] and bus.counters["slot.redone"] == 0
    assert tracker._sweep is None and not tracker._due  # its check ran, found it done, stopped


async def test_calls_sent_together_share_one_timer_and_each_is_checked() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=0.05)  # type: ignore[arg-type]
    for i in range(100):
        tracker.sent("q1", f"n{i}", "p0", 1, ref)  # type: ignore[arg-type]
    sweep = tracker._sweep
    assert sweep is not None and len(tracker._due) == 100
    for i in range(0, 100, 2):  # half of them answered, the other half never accepted
        tracker.finished("q1", f"n{i}", "p0", 1)
    tracker.accepted("q1", "n1", "p0", 1, "w-a")  # one taken: not redone for lack of a taker
    await asyncio.sleep(0.15)
    assert sorted(m.query_id + m.tag for m in ref.told) == ["q1p0"] * 49
    assert bus.counters["slot.redone"] == 49
    assert tracker._sweep is None and not tracker._due


async def test_a_call_sent_again_is_checked_from_its_new_attempt() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=0.4)  # type: ignore[arg-type]
    tracker.sent("q1", "n0", "p0", 1, ref)  # type: ignore[arg-type]
    await asyncio.sleep(0.25)
    tracker.sent("q1", "n0", "p0", 2, ref)  # type: ignore[arg-type]  (attempt 1's check is stale)
    await asyncio.sleep(0.2)  # attempt 1's check time has passed, attempt 2's not
    assert ref.told == []
    await asyncio.sleep(0.5)
    assert ref.told == [Redo(query_id="q1", tag="p0", attempt=2, reason="no worker accepted it")]


async def test_a_call_nobody_took_is_redone_after_the_accept_timeout() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=0.3)  # type: ignore[arg-type]
    tracker.sent("q1", "n0", "p1", 2, ref)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert ref.told == []  # not yet
    await asyncio.sleep(0.5)
    assert ref.told == [Redo(query_id="q1", tag="p1", attempt=2, reason="no worker accepted it")]
    assert bus.counters["slot.redone"] == 1


async def test_calls_held_by_a_lost_worker_are_redone_at_once() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=5.0)  # type: ignore[arg-type]
    for tag in ("p0", "p1", "synth"):
        tracker.sent("q1", "n0", tag, 1, ref)  # type: ignore[arg-type]
    tracker.accepted("q1", "n0", "p0", 1, "w-a")
    tracker.accepted("q1", "n0", "p1", 1, "w-b")
    assert tracker.lost("w-a") == 1
    assert [m.tag for m in ref.told] == ["p0"]
    assert sorted(key[2] for key in tracker._calls) == ["p1", "synth"]


def test_a_slow_call_taken_in_process_is_on_record_at_once_and_not_redone(
    nats_server: NatsServer, llm_url: str
) -> None:
    """A slot call served by the supernode's own worker is recorded as taken by it when the
    slot actor starts it (no slot.accepted over the inbox, no timer), so a call slower than
    the acceptance timeout is not redone."""
    with Stack(nats_url=nats_server.url) as stack:
        apply_config(
            stack,
            config_yaml(
                llm_url,
                {"expert": node("Critic", ["slow:1", "fixed:A"], "fixed:A")},
                extra_llms=["slow:1"],
            ),
        )
        [worker] = stack.workers
        tracker = worker.ctx.tracker
        tracker.accept_timeout_s = 0.1  # before a slot.accepted (at 0.25 s) could come
        assert stack.bus is not None
        before = dict(stack.bus.counters)
        result = ask(stack)
        counters = stack.bus.counters
    assert result["status"] == "ok"
    assert counters["slot.redone"] == before.get("slot.redone", 0)
    assert counters["slot.accepted_unknown_call"] == before.get("slot.accepted_unknown_call", 0)
    assert tracker._calls == {}
