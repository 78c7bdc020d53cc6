"""Bookkeeping of outstanding slot calls, kept on the bus loop so it costs no actor hand-offs.

A supernode sends a slot call through a queue group and does not know which
worker takes it; the taker announces itself (``slot.accepted``).  This
tracker remembers the taker of every outstanding call and asks the owning
supernode to send the call again (:class:`Redo`) when nobody took it within
``accept_timeout_s`` or when its taker is lost.  Only those rare events reach
the actor; the common path (accepted, then answered) never wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka

from hieramas.actors.messages import Redo
from hieramas.bus import Bus

__all__ = ["SlotCallTracker"]

Key = tuple[str, str, str]  # (query id, node, tag)


@dataclass(slots=True)
class _Call:
    attempt: int
    ref: pykka.ActorRef[Any]
    worker: str | None = None


class SlotCallTracker:
    """Per-process map of outstanding slot calls; every method but :meth:`sent` runs on the loop.

    The acceptance checks are a queue in time order with one timer for the earliest (at most
    ``accept_timeout_s / 20`` late), not a timer per call: a lone query sends 32 calls, and
    a timer made and cancelled for each cost more than the rest of the bookkeeping."""

    def __init__(self, bus: Bus, *, accept_timeout_s: float = 2.0) -> None:
        self.bus = bus
        self.accept_timeout_s = accept_timeout_s
        self._calls: dict[Key, _Call] = {}
        self._due: deque[tuple[float, Key, int]] = deque()  # (check time, call, attempt)
        self._sweep: asyncio.TimerHandle | None = None

    def sent(
        self, query_id: str, node: str, tag: str, attempt: int, ref: pykka.ActorRef[Any]
    ) -> None:
        """Record a call just sent (from any thread)."""
        key = (query_id, node, tag)
        self.bus.on_loop(self._register, key, attempt, ref)

    def _register(self, key: Key, attempt: int, ref: pykka.ActorRef[Any]) -> None:
        self._calls[key] = _Call(attempt, ref)
        due = self.bus.loop.time() + self.accept_timeout_s
        self._due.append((due, key, attempt))
        if self._sweep is None:
            self._sweep = self.bus.loop.call_at(due, self._check_due)

    def accepted(self, query_id: str, node: str, tag: str, attempt: int, worker: str) -> bool:
        """A worker announced it took the call; False if no such call is outstanding."""
        call = self._calls.get((query_id, node, tag))
        if call is not None and call.attempt == attempt:
            call.worker = worker
            return True
        return False

    def taken(self, query_id: str, node: str, tag: str, attempt: int, worker: str) -> None:
        """``worker``, this process's, took the call (from any thread): no announcement, no
        timer; it is on record at once, as one announced over the inbox would be."""
        self.bus.on_loop(self.accepted, query_id, node, tag, attempt, worker)

    def finished(self, query_id: str, node: str, tag: str, attempt: int) -> None:
        """The call's reply (or failure) arrived (its check, still queued, will find nothing)."""
        key = (query_id, node, tag)
        call = self._calls.get(key)
        if call is not None and call.attempt == attempt:
            del self._calls[key]

    def lost(self, worker: str) -> int:
        """Ask for every call held by ``worker`` to be redone; returns how many."""
        held = [(key, call) for key, call in self._calls.items() if call.worker == worker]
        for key, call in held:
            self._redo(key, call, f"worker {worker} lost")
        return len(held)

    def _check_due(self) -> None:
        """Redo the calls nobody accepted in time; wait for the next check (if any)."""
        self._sweep = None
        loop, due, calls = self.bus.loop, self._due, self._calls
        now = loop.time()
        while due and due[0][0] <= now:
            _, key, attempt = due.popleft()
            call = calls.get(key)
            if call is not None and call.attempt == attempt and call.worker is None:
                self._redo(key, call, "no worker accepted it")
        if due:  # a little late, so that one timer serves the calls sent close together
            self._sweep = loop.call_at(due[0][0] + self.accept_timeout_s / 20, self._check_due)

    def _redo(self, key: Key, call: _Call, reason: str) -> None:
        del self._calls[key]
        self.bus.counters["slot.redone"] += 1
        with contextlib.suppress(pykka.ActorDeadError):
            call.ref.tell(Redo(query_id=key[0], tag=key[2], attempt=call.attempt, reason=reason))
