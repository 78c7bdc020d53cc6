"""One episode per query, assembled from trace events that arrive in any order.

A query's events come from several processes (the gateway's ``query`` event,
each worker's ``supernode`` events), each batched on its own, so they reach the
stream in any order.  :class:`Assembler` holds a partial record per query and
hands out an :class:`Assembled` query when its ``query`` event has arrived and
every supernode its plan kept active has reported, or ``grace_s`` after the
``query`` event (the missing supernodes then count as failed).  Records with no
``query`` event are dropped after ``orphan_s``; beyond ``max_pending`` records the
oldest is evicted.  Both are counted.

Processing is idempotent by query id: a query handed out once is remembered
(:attr:`Assembler.done`), and its later events are dropped and counted, except
``feedback``, which is handed to the caller.  The memory is a window: an id is
forgotten ``done_keep_s`` after it was handed out, or sooner when more than
``max_done`` are held (oldest first; counted as ``done_forgotten``).  That bounds a
long-running learner's state; it does not weaken exactly-once across restarts,
since a restarted learner reads on after its saved position, never before it.  It
only means a *duplicate* ``query`` event arriving more than the window after the
first would be taken as new (its late ``supernode`` events merely orphan).  The whole state round-trips
through :meth:`Assembler.to_json` so the learner can checkpoint partial
episodes.  ``llm_call`` and ``decision`` events carry nothing an episode needs
beyond the ``query`` and ``supernode`` events; they are counted only.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from hieramas.controller.config import SKIP
from hieramas.wire.events import Event, Feedback, QueryDone, SupernodeRun, decode_event

__all__ = ["Assembled", "Assembler"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Assembled:
    """One query's events, ready to be graded.

    ``missing`` names active supernodes whose event never came (grace expired);
    ``seq`` is the stream sequence of the message that carried the ``query`` event.
    """

    query: QueryDone
    nodes: dict[str, SupernodeRun]
    missing: tuple[str, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    seq: int = 0


@dataclass
class _Partial:
    first_seen: float
    query: QueryDone | None = None
    query_seen: float | None = None
    query_seq: int = 0
    nodes: dict[str, SupernodeRun] = field(default_factory=dict)
    feedback: list[Feedback] = field(default_factory=list)


def active_nodes(query: QueryDone) -> list[str]:
    """The supernodes the query's plan kept (its synthesizer is not ``skip``)."""
    if query.assignment is None:
        return []
    return [n for n, s in query.assignment.synthesizers.items() if s != SKIP]


class Assembler:
    """Partial episodes by query id (see the module docstring).  Not thread-safe."""

    def __init__(
        self,
        *,
        grace_s: float = 10.0,
        orphan_s: float = 600.0,
        max_pending: int = 20_000,
        done_keep_s: float = 3600.0,
        max_done: int = 100_000,
    ) -> None:
        self.grace_s = grace_s
        self.orphan_s = orphan_s
        self.max_pending = max_pending
        self.done_keep_s = done_keep_s
        self.max_done = max_done
        self.counters: Counter[str] = Counter()
        self.done: OrderedDict[str, float] = OrderedDict()
        """Query ids handed out, with when (oldest first): the idempotency window."""
        self._pending: OrderedDict[str, _Partial] = OrderedDict()  # in order of first sight
        self._waiting: OrderedDict[str, float] = OrderedDict()  # query seen: its grace deadline

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, event: Event, now: float, seq: int = 0) -> list[Assembled | Feedback]:
        """Take one event (from stream message ``seq``); what it completes (an
        :class:`Assembled` query) or a :class:`Feedback` for a query already handed out."""
        qid = event.query_id
        if not isinstance(event, QueryDone | SupernodeRun | Feedback):
            self.counters[f"ignored_{event.event}"] += 1
            return []
        if qid in self.done:
            if isinstance(event, Feedback):
                return [event]
            self.counters["duplicate_query" if isinstance(event, QueryDone) else "late_event"] += 1
            return []
        partial = self._pending.get(qid)
        if partial is None:
            partial = self._pending[qid] = _Partial(first_seen=now)
            self._bound()
        if isinstance(event, Feedback):
            partial.feedback.append(event)
            return []
        if isinstance(event, SupernodeRun):
            if event.node in partial.nodes:
                self.counters["duplicate_node_event"] += 1
                return []
            partial.nodes[event.node] = event
        elif partial.query is not None:
            self.counters["duplicate_query"] += 1
            return []
        else:
            partial.query, partial.query_seen, partial.query_seq = event, now, seq
            self._waiting[qid] = now + self.grace_s
        query = partial.query
        if query is not None and all(n in partial.nodes for n in active_nodes(query)):
            return [self._finish(qid, partial, (), now)]
        return []

    def expire(self, now: float) -> list[Assembled]:
        """Queries whose grace ran out (missing supernodes count as failed); drops orphans."""
        out: list[Assembled] = []
        while self._waiting:
            qid, deadline = next(iter(self._waiting.items()))
            if deadline > now:
                break
            partial = self._pending[qid]
            assert partial.query is not None
            missing = tuple(n for n in active_nodes(partial.query) if n not in partial.nodes)
            self.counters["completed_by_grace"] += 1
            out.append(self._finish(qid, partial, missing, now))
        orphans = []
        for qid, partial in self._pending.items():  # oldest first: stop at the first young one
            if partial.first_seen + self.orphan_s > now:
                break
            if partial.query is None:  # one with its query event is waiting for its grace
                orphans.append(qid)
        for qid in orphans:
            self._drop(qid, "orphaned")
        self._forget(now)
        return out

    def _finish(
        self, qid: str, partial: _Partial, missing: tuple[str, ...], now: float
    ) -> Assembled:
        del self._pending[qid]
        self._waiting.pop(qid, None)
        self.done[qid] = now
        if len(self.done) > self.max_done:
            self._forget(now)
        self.counters["assembled"] += 1
        assert partial.query is not None
        return Assembled(
            partial.query, partial.nodes, missing, tuple(partial.feedback), partial.query_seq
        )

    def _forget(self, now: float) -> None:
        """Trim the idempotency window: ids older than ``done_keep_s``, beyond ``max_done``."""
        done, horizon = self.done, now - self.done_keep_s
        while done and (len(done) > self.max_done or next(iter(done.values())) < horizon):
            done.popitem(last=False)
            self.counters["done_forgotten"] += 1

    def _bound(self) -> None:
        while len(self._pending) > self.max_pending:
            self._drop(next(iter(self._pending)), "evicted")

    def _drop(self, qid: str, why: str) -> None:
        partial = self._pending.pop(qid)
        self._waiting.pop(qid, None)
        self.counters[why] += 1
        if self.counters[why] in (1, 10, 100) or self.counters[why] % 1000 == 0:
            log.warning(
                f"learner.pending_{why}",
                query_id=qid,
                had_query=partial.query is not None,
                nodes=len(partial.nodes),
                total=self.counters[why],
            )

    # -- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The pending records, done ids and counters as msgpack-ready data."""
        return {
            "pending": [
                {
                    "query_id": qid,
                    "first_seen": p.first_seen,
                    "query_seen": p.query_seen,
                    "query_seq": p.query_seq,
                    "query": msgspec.to_builtins(p.query) if p.query is not None else None,
                    "nodes": [msgspec.to_builtins(e) for e in p.nodes.values()],
                    "feedback": [msgspec.to_builtins(e) for e in p.feedback],
                }
                for qid, p in self._pending.items()
            ],
            "done": [[qid, t] for qid, t in self.done.items()],  # oldest first
            "counters": dict(self.counters),
        }

    def load_json(self, data: dict[str, Any], now: float) -> None:
        """Restore :meth:`to_json` output.  Waiting queries get a full grace period from
        ``now``: their missing events may be in the stream after the saved position, which
        a restarted learner has not read again yet."""
        self._pending.clear()
        self._waiting.clear()
        # [id, when] pairs; a bare id (a state saved before the window) counts from now
        self.done = OrderedDict(
            (str(d), now) if isinstance(d, str) else (str(d[0]), float(d[1]))
            for d in data.get("done") or ()
        )
        self.counters = Counter(data.get("counters") or {})
        for row in data.get("pending") or ():
            partial = _Partial(first_seen=float(row["first_seen"]))
            if row.get("query") is not None:
                query = decode_event(row["query"])
                assert isinstance(query, QueryDone)
                partial.query, partial.query_seen = query, float(row["query_seen"])
                partial.query_seq = int(row.get("query_seq") or 0)
                self._waiting[row["query_id"]] = now + self.grace_s
            for raw in row.get("nodes") or ():
                node = decode_event(raw)
                assert isinstance(node, SupernodeRun)
                partial.nodes[node.node] = node
            for raw in row.get("feedback") or ():
                fb = decode_event(raw)
                assert isinstance(fb, Feedback)
                partial.feedback.append(fb)
            self._pending[row["query_id"]] = partial
