"""SlotCallTracker: redo of calls nobody took or whose taker was lost; no timer left behind."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hieramas.actors.messages import Redo
from hieramas.actors.tracking import SlotCallTracker


class LoopBus:
    """The parts of the bus the tracker uses, on the test's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.counters: Counter[str] = Counter()

    def in_loop(self) -> bool:
        return True


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
    check = tracker._calls[("q1", "n0", "p0")].check
    tracker.finished("q1", "n0", "p0", 1)
    await asyncio.sleep(0.1)
    assert check is not None and check.cancelled()
    assert ref.told == [] and bus.counters["slot.redone"] == 0


async def test_a_call_nobody_took_is_redone_after_the_accept_timeout() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=0.05)  # type: ignore[arg-type]
    tracker.sent("q1", "n0", "p1", 2, ref)  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert ref.told == []  # not yet
    await asyncio.sleep(0.1)
    assert ref.told == [Redo(query_id="q1", tag="p1", attempt=2, reason="no worker accepted it")]
    assert bus.counters["slot.redone"] == 1


async def test_calls_held_by_a_lost_worker_are_redone_at_once() -> None:
    bus, ref = LoopBus(), Recorder()
    tracker = SlotCallTracker(bus, accept_timeout_s=5.0)  # type: ignore[arg-type]
    for tag in ("p0", "p1", "synth"):
        tracker.sent("q1", "n0", tag, 1, ref)  # type: ignore[arg-type]
    tracker.accepted("q1", "n0", "p0", 1, "w-a")
    tracker.accepted("q1", "n0", "p1", 1, "w-b")
    checks = {key[2]: call.check for key, call in tracker._calls.items()}
    assert tracker.lost("w-a") == 1
    assert [m.tag for m in ref.told] == ["p0"]
    p0 = checks["p0"]
    assert p0 is not None and p0.cancelled()
    assert sorted(key[2] for key in tracker._calls) == ["p1", "synth"]
