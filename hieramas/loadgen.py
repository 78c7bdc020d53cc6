"""Concurrent clients asking queries through the gateway, each outcome classified.

An outcome is an ``answer`` (status ok), an explicit ``error`` (a failed query's
status, or a bus error such as no responders), a ``hang`` (no reply at all: the
client gave up ``timeout_s + 5`` seconds in) or an ``exception`` (a bug in the
client path).  Used by the chaos suite (``tests/chaos/``) and ``bench/soak.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hieramas.bus import Bus, BusError
from hieramas.controller.client import HieraClient

__all__ = ["Outcome", "QueryLoad", "question"]


def question(i: int) -> str:
    """The ``i``-th query text: a multiple-choice question (the emulator answers any)."""
    return (
        f"Question {i}: which of these numbers is even? "
        f"A) {2 * i + 1} B) {2 * i + 2} C) {2 * i + 3} D) {2 * i + 5}"
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One query: when it was sent and ended (monotonic seconds), and how it ended."""

    index: int
    client: int
    started: float
    ended: float
    kind: str  # answer | error | hang | exception
    code: str  # "ok", the query's status, "bus.<code>" or the exception's type
    detail: str = ""
    workers: tuple[str, ...] = ()
    query_id: str = ""

    @property
    def latency_s(self) -> float:
        return self.ended - self.started


@dataclass
class QueryLoad:
    """``clients`` concurrent clients on ``bus``, each asking one query after another."""

    bus: Bus
    clients: int = 4
    timeout_s: float = 20.0
    pause_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    on_outcome: Callable[[Outcome], None] | None = None
    _count: int = 0

    async def run(self, *, duration_s: float | None = None, queries: int | None = None) -> None:
        """Ask until ``duration_s`` has passed or ``queries`` have been sent (on the loop)."""
        if duration_s is None and queries is None:
            raise ValueError("give a duration or a number of queries")
        stop_at = time.monotonic() + duration_s if duration_s is not None else float("inf")
        client = HieraClient(self.bus, sender="loadgen")

        async def one_client(c: int) -> None:
            while time.monotonic() < stop_at and (queries is None or self._count < queries):
                i = self._count
                self._count += 1
                outcome = await self._ask(client, c, i)
                self.outcomes.append(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)

        await asyncio.gather(*(one_client(c) for c in range(self.clients)))

    async def _ask(self, client: HieraClient, c: int, i: int) -> Outcome:
        started = time.monotonic()
        try:
            result = await client.ask(question(i), timeout_s=self.timeout_s)
        except BusError as exc:
            kind = "hang" if exc.code == "timeout" else "error"
            return Outcome(i, c, started, time.monotonic(), kind, f"bus.{exc.code}", str(exc))
        except Exception as exc:
            name = type(exc).__name__
            return Outcome(i, c, started, time.monotonic(), "exception", name, str(exc))
        ended = time.monotonic()
        status = str(result.get("status"))
        return Outcome(
            i,
            c,
            started,
            ended,
            "answer" if status == "ok" else "error",
            status,
            str(result.get("error") or "")[:200],
            _workers(result),
            str(result.get("query_id") or ""),
        )

    def kinds(self) -> Counter[str]:
        """How many outcomes of each kind."""
        return Counter(o.kind for o in self.outcomes)

    def codes(self) -> Counter[str]:
        """How many outcomes of each code (``ok`` and every error)."""
        return Counter(o.code for o in self.outcomes)


def _workers(result: dict[str, Any]) -> tuple[str, ...]:
    nodes = result.get("nodes") or {}
    return tuple(sorted({str(n.get("worker")) for n in nodes.values() if isinstance(n, dict)}))
