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
from dataclasses import dataclass
from typing import Any

import pykka

from hieramas.actors.messages import Redo
from hieramas.bus import Bus

__all__ = ["SlotCallTracker"]

Key = tuple[str, str, str]  # (query id, node, tag)


@dataclass
class _Call:
    attempt: int
    ref: pykka.ActorRef[Any]
    worker: str | None = None
    check: asyncio.TimerHandle | None = None  # the acceptance check, cancelled once answered


class SlotCallTracker:
    """Per-process map of outstanding slot calls; every method but :meth:`sent` runs on the loop."""

    def __init__(self, bus: Bus, *, accept_timeout_s: float = 2.0) -> None:
        self.bus = bus
        self.accept_timeout_s = accept_timeout_s
        self._calls: dict[Key, _Call] = {}

    def sent(
        self, query_id: str, node: str, tag: str, attempt: int, ref: pykka.ActorRef[Any]
    ) -> None:
        """Record a call just sent (from any thread)."""
        key = (query_id, node, tag)

        def register() -> None:
            check = self.bus.loop.call_later(
                self.accept_timeout_s, self._check_accepted, key, attempt
            )
            self._calls[key] = _Call(attempt, ref, check=check)

        if self.bus.in_loop():
            register()
        else:
            self.bus.loop.call_soon_threadsafe(register)

    def accepted(self, query_id: str, node: str, tag: str, attempt: int, worker: str) -> bool:
        """A worker announced it took the call; False if no such call is outstanding."""
        call = self._calls.get((query_id, node, tag))
        if call is not None and call.attempt == attempt:
            call.worker = worker
            return True
        return False

    def finished(self, query_id: str, node: str, tag: str, attempt: int) -> None:
        """The call's reply (or failure) arrived."""
        key = (query_id, node, tag)
        call = self._calls.get(key)
        if call is not None and call.attempt == attempt:
            del self._calls[key]
            if call.check is not None:
                call.check.cancel()

    def lost(self, worker: str) -> int:
        """Ask for every call held by ``worker`` to be redone; returns how many."""
        held = [(key, call) for key, call in self._calls.items() if call.worker == worker]
        for key, call in held:
            self._redo(key, call, f"worker {worker} lost")
        return len(held)

    def _check_accepted(self, key: Key, attempt: int) -> None:
        call = self._calls.get(key)
        if call is not None and call.attempt == attempt and call.worker is None:
            self._redo(key, call, "no worker accepted it")

    def _redo(self, key: Key, call: _Call, reason: str) -> None:
        del self._calls[key]
        if call.check is not None:
            call.check.cancel()
        self.bus.counters["slot.redone"] += 1
        with contextlib.suppress(pykka.ActorDeadError):
            call.ref.tell(Redo(query_id=key[0], tag=key[2], attempt=call.attempt, reason=reason))
