"""Which workers are alive: their heartbeats on ``<prefix>.worker.hello``.

(Gateways use the same tracker for each other, on ``<prefix>.gw.hello``: see
:mod:`hieramas.controller.failover`.)

Workers announce themselves every second and say goodbye when they stop.
A worker silent for ``dead_after_s`` is declared lost, and every listener
(the gateway, the supernodes of other workers) is told, so work it held is
redone elsewhere instead of waiting for a deadline.  Anything else on that
subject (another kind, a missing or mistyped field) is rejected with a typed,
logged and counted error, and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from hieramas.bus import Bus
from hieramas.wire import Envelope, Kind, Subjects, WireError
from hieramas.wire.messages import WorkerHello, read

__all__ = ["HEARTBEAT_S", "Liveness"]

log = structlog.get_logger(__name__)

HEARTBEAT_S = 1.0


class Liveness:
    """Heartbeat tracker for one process; listeners run on the bus loop."""

    def __init__(
        self,
        bus: Bus,
        subjects: Subjects | None = None,
        *,
        dead_after_s: float = 3.5 * HEARTBEAT_S,
        check_every_s: float = 0.25,
        subject: str | None = None,
        label: str = "worker",
    ) -> None:
        self.bus = bus
        self.subjects = subjects or Subjects()
        self.subject = subject or self.subjects.worker_hello
        """Where the heartbeats come (``worker.hello`` records): workers' by default."""
        self.label = label  # what is tracked, in logs and counters ("gateway": ``gateways.lost``)
        self.dead_after_s = dead_after_s
        self.check_every_s = check_every_s
        self.last_seen: dict[str, float] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(worker_id)`` when a worker is lost or says goodbye."""
        self._listeners.append(listener)

    def expect(self, worker: str) -> None:
        """Start watching ``worker`` (heard of indirectly) if its heartbeats were not seen yet."""
        if worker and worker not in self.last_seen:
            self.last_seen[worker] = time.monotonic()

    def alive(self, worker: str) -> bool:
        """Has ``worker`` been heard from recently?"""
        return worker in self.last_seen

    async def start(self) -> None:
        """Subscribe to heartbeats and start the checker (on the loop)."""
        self._sub = await self.bus.asubscribe(self.subject, self._on_hello)
        self._task = asyncio.get_running_loop().create_task(self._check_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def _on_hello(self, envelope: Envelope, reply: str | None) -> None:
        subject = self.subject
        if envelope.kind is not Kind.WORKER_HELLO:
            kind = envelope.kind.value
            self.bus.reject(
                subject, reply, "kind", f"expected {Kind.WORKER_HELLO.value}, got {kind}"
            )
            return
        try:
            hello = read(envelope, WorkerHello)
        except WireError as exc:
            self.bus.reject(subject, reply, exc.code, str(exc))
            return
        if hello.status == "bye":
            self._lost(hello.worker, "goodbye")
            return
        self.last_seen[hello.worker] = time.monotonic()
        self.info[hello.worker] = {"nodes": hello.nodes, "last_seen": time.time()}

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            now = time.monotonic()
            for worker, seen in list(self.last_seen.items()):
                if now - seen > self.dead_after_s:
                    self._lost(worker, "silent")

    def _lost(self, worker: str, reason: str) -> None:
        if self.last_seen.pop(worker, None) is None and reason != "goodbye":
            return
        self.info.pop(worker, None)
        self.bus.counters[f"{self.label}s.lost"] += 1
        (log.info if reason == "goodbye" else log.warning)(
            f"{self.label}.lost", **{self.label: worker}, reason=reason
        )
        for listener in self._listeners:
            try:
                listener(worker)
            except Exception:
                log.exception("liveness.listener_failed")
