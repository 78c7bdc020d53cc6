"""A plan: for one query, which LLM fills every slot and which nodes and edges are active.

The controller turns *config + query* into a :class:`Plan`; the plan travels
with the query, so every actor works from the plan (and config version) the
query started with, whatever is applied meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Any

import msgspec

from hieramas.llm.types import ModelSpec
from hieramas.wire.subjects import NODE_NAME

__all__ = ["MAX_TIMEOUT_S", "NodeId", "NodePlan", "Plan", "Unix"]

NodeId = Annotated[str, msgspec.Meta(pattern=NODE_NAME.pattern)]
"""A node id (or worker group name): a subject token, checked when a plan is decoded."""
MAX_TIMEOUT_S = 86_400.0
"""The longest deadline a query may have (a day): timers beyond that are refused."""
Unix = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
"""A point in time, Unix seconds (finite: NaN and infinity are refused)."""


def _record(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One active supernode for one query. ``None`` in ``proposers`` is a skipped slot."""

    node: str  # the key it is under in ``Plan.nodes`` (a worker checks; keys are NodeIds)
    role: str
    proposers: tuple[str | None, ...]
    synthesizer: str
    preds: tuple[str, ...] = ()  # nodes of the plan (a worker checks)
    succs: tuple[str, ...] = ()
    group: NodeId | None = None

    @property
    def active_slots(self) -> list[int]:
        """Indices of proposer slots that make a call."""
        return [i for i, llm in enumerate(self.proposers) if llm is not None]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a worker needs to run its part of one query but its LLMs' endpoints.

    LLMs are named by their pool name; a worker looks up their endpoints (URLs and key
    variables) in the stored config version ``config_version``, never in a message."""

    query_id: str
    config_version: Annotated[int, msgspec.Meta(ge=1)]
    domain: str
    task_text: str
    nodes: dict[NodeId, NodePlan]
    decision: str
    llms: dict[str, ModelSpec]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0
    node_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] = 60.0
    deadline_unix: Unix = 0.0
    skipped_nodes: tuple[str, ...] = ()
    answerless_roles: tuple[str, ...] = ()
    emulated: bool = False
    decision_group: NodeId | None = None
    alone_prompt: str = "cot"
    meta: dict[str, Any] = field(default_factory=dict)

    def group_of(self, node: str) -> str | None:
        """The worker group that hosts ``node`` (or the decision node) for this query."""
        return self.decision_group if node not in self.nodes else self.nodes[node].group

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-ready map (built field by field: ``asdict`` deep-copies and is 20x slower)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["nodes"] = {name: _record(node) for name, node in self.nodes.items()}
        data["llms"] = {name: _record(spec) for name, spec in self.llms.items()}
        data["meta"] = dict(self.meta)
        return data

    @classmethod
    def from_wire(cls, data: object) -> Plan:
        """Rebuild a plan from :meth:`to_wire` output (or its msgpack form), every field's
        type and every node id checked; ``msgspec.ValidationError`` names a bad field."""
        return msgspec.convert(data, cls)
