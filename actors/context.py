"""What every actor of a worker process shares: the bus, the LLM client, traces, ids, the
trusted config versions and the supervisor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hieramas.actors.dispatch import Supervisor
from hieramas.actors.tracking import SlotCallTracker
from hieramas.actors.trusted import TrustedConfigs
from hieramas.bus import Bus
from hieramas.llm.types import ChatClient
from hieramas.traces import TraceEmitter
from hieramas.wire import Envelope, Kind, Subjects

__all__ = ["WorkerContext"]


@dataclass(frozen=True)
class WorkerContext:
    """Process-wide services handed to each actor at start."""

    bus: Bus
    subjects: Subjects
    llm: ChatClient
    traces: TraceEmitter
    worker_id: str
    tracker: SlotCallTracker
    configs: TrustedConfigs
    """The stored config versions: where LLM endpoints are looked up."""
    supervisor: Supervisor | None = None
    """Restarts a crashed actor (the worker)."""

    @property
    def inbox(self) -> str:
        """This worker's private subject (routes and predecessor inputs arrive here)."""
        return self.subjects.instance(self.worker_id)

    def envelope(self, kind: Kind, payload: dict[str, Any], like: Envelope) -> Envelope:
        """A new envelope of ``kind`` in the same query/trace as ``like``."""
        return like.reply(kind, payload, sender=self.worker_id)
