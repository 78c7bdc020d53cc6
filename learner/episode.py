"""The learner's record of one executed query: what was chosen, what came out, what it cost.

The learner service assembles an :class:`Episode` from a query's trace events and
its grade; the rewards (:mod:`.rewards`) and the trainer (:mod:`.reinforce`) read
only this record.  It is plain data (``to_json``/``from_json``), so episodes can be
stored and replayed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hieramas.learner.slots import SlotAssignment

__all__ = ["Episode", "NodeOutcome"]


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """What one supernode did for one query.

    ``ran`` is False for a supernode dropped by the plan (synthesizer ``skip``).
    ``answer`` is the parsed answer (None: none, unparseable or failed); ``correct``
    is the grade of that answer (None: not graded or ungradable, which the rewards
    count as unsolved).  ``cost_usd`` sums the node's own calls only.
    """

    node: str
    role: str
    ran: bool
    answer: str | None
    correct: bool | None
    cost_usd: float
    answerless: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON/msgpack-ready map."""
        return {
            "node": self.node,
            "role": self.role,
            "ran": self.ran,
            "answer": self.answer,
            "correct": self.correct,
            "cost_usd": self.cost_usd,
            "answerless": self.answerless,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeOutcome:
        """Inverse of :meth:`to_json`."""
        return cls(
            node=str(data["node"]),
            role=str(data["role"]),
            ran=bool(data["ran"]),
            answer=None if data.get("answer") is None else str(data["answer"]),
            correct=None if data.get("correct") is None else bool(data["correct"]),
            cost_usd=float(data["cost_usd"]),
            answerless=bool(data.get("answerless", False)),
        )


@dataclass(frozen=True, slots=True)
class Episode:
    """One graded query, as the trainer needs it.

    ``assignment`` is the per-slot choice the query ran with.  For an ``explore``
    episode (actions sampled by the policy), ``temperature`` and ``slot_log_probs``
    are those it was sampled with, in the layout's slot order: the trainer recomputes
    log-probabilities under the same temperature and uses the stored ones for an
    importance ratio when the policy has moved on since.  ``query_text`` is what was
    embedded to plan it (the trainer embeds it again, through the cache).
    ``final_correct`` None means ungraded (no ground truth): not trained on.
    ``total_cost_usd`` is the whole query's cost, from its own trace events.
    """

    query_id: str
    item_id: str | None
    domain: str
    config_name: str
    config_version: int
    policy_version: int | None
    query_text: str
    assignment: SlotAssignment
    nodes: Mapping[str, NodeOutcome]
    final_correct: bool | None
    total_cost_usd: float
    explore: bool
    temperature: float | None = None
    slot_log_probs: tuple[float, ...] | None = None
    query_embedding: bytes | None = None
    """The embedding the planner read (float16), when the trace carried one."""
    embedder: str | None = None
    """The embedder that made ``query_embedding``."""

    @property
    def graded(self) -> bool:
        """Whether the final answer has a verdict (only graded episodes are trained on)."""
        return self.final_correct is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON/msgpack-ready map."""
        return {
            "query_id": self.query_id,
            "item_id": self.item_id,
            "domain": self.domain,
            "config_name": self.config_name,
            "config_version": self.config_version,
            "policy_version": self.policy_version,
            "query_text": self.query_text,
            "assignment": self.assignment.to_json(),
            "nodes": {n: o.to_json() for n, o in self.nodes.items()},
            "final_correct": self.final_correct,
            "total_cost_usd": self.total_cost_usd,
            "explore": self.explore,
            "temperature": self.temperature,
            "slot_log_probs": None if self.slot_log_probs is None else list(self.slot_log_probs),
            "query_embedding": None
            if self.query_embedding is None
            else base64.b64encode(self.query_embedding).decode(),
            "embedder": self.embedder,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Episode:
        """Inverse of :meth:`to_json`; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
        logps = data.get("slot_log_probs")
        temp = data.get("temperature")
        pv = data.get("policy_version")
        fc = data.get("final_correct")
        item = data.get("item_id")
        packed = data.get("query_embedding")
        embedder = data.get("embedder")
        return cls(
            query_id=str(data["query_id"]),
            item_id=None if item is None else str(item),
            domain=str(data["domain"]),
            config_name=str(data["config_name"]),
            config_version=int(data["config_version"]),
            policy_version=None if pv is None else int(pv),
            query_text=str(data["query_text"]),
            assignment=SlotAssignment.from_json(data["assignment"]),
            nodes={str(n): NodeOutcome.from_json(o) for n, o in data["nodes"].items()},
            final_correct=None if fc is None else bool(fc),
            total_cost_usd=float(data["total_cost_usd"]),
            explore=bool(data["explore"]),
            temperature=None if temp is None else float(temp),
            slot_log_probs=None if logps is None else tuple(float(x) for x in logps),
            query_embedding=None if packed is None else base64.b64decode(str(packed)),
            embedder=None if embedder is None else str(embedder),
        )
