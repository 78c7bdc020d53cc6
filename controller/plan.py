"""A plan: for one query, which LLM fills every slot and which nodes and edges are active.

The controller turns *config + query* into a :class:`Plan`; the plan travels
with the query, so every actor works from the plan (and config version) the
query started with, whatever is applied meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hieramas.llm.types import EndpointSpec, ModelSpec

__all__ = ["NodePlan", "Plan"]


def _record(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One active supernode for one query. ``None`` in ``proposers`` is a skipped slot."""

    node: str
    role: str
    proposers: tuple[str | None, ...]
    synthesizer: str
    preds: tuple[str, ...] = ()
    succs: tuple[str, ...] = ()
    group: str | None = None

    @property
    def active_slots(self) -> list[int]:
        """Indices of proposer slots that make a call."""
        return [i for i, llm in enumerate(self.proposers) if llm is not None]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a worker needs to run its part of one query, with no other lookup."""

    query_id: str
    config_version: int
    domain: str
    task_text: str
    nodes: dict[str, NodePlan]
    decision: str
    llms: dict[str, ModelSpec]
    endpoints: dict[str, EndpointSpec]
    max_tokens: int = 1024
    temperature: float = 0.0
    node_timeout_s: float = 60.0
    deadline_unix: float = 0.0
    skipped_nodes: tuple[str, ...] = ()
    answerless_roles: tuple[str, ...] = ()
    emulated: bool = False
    decision_group: str | None = None
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
        data["endpoints"] = {name: _record(spec) for name, spec in self.endpoints.items()}
        data["meta"] = dict(self.meta)
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_wire` output; ``KeyError``/``TypeError`` if malformed."""
        nodes = {
            name: NodePlan(
                node=n["node"],
                role=n["role"],
                proposers=tuple(n["proposers"]),
                synthesizer=n["synthesizer"],
                preds=tuple(n["preds"]),
                succs=tuple(n["succs"]),
                group=n.get("group"),
            )
            for name, n in data["nodes"].items()
        }
        return cls(
            query_id=data["query_id"],
            config_version=int(data["config_version"]),
            domain=data["domain"],
            task_text=data["task_text"],
            nodes=nodes,
            decision=data["decision"],
            llms={k: ModelSpec(**v) for k, v in data["llms"].items()},
            endpoints={k: EndpointSpec(**v) for k, v in data["endpoints"].items()},
            max_tokens=int(data["max_tokens"]),
            temperature=float(data["temperature"]),
            node_timeout_s=float(data["node_timeout_s"]),
            deadline_unix=float(data["deadline_unix"]),
            skipped_nodes=tuple(data["skipped_nodes"]),
            answerless_roles=tuple(data["answerless_roles"]),
            emulated=bool(data["emulated"]),
            decision_group=data.get("decision_group"),
            alone_prompt=str(data.get("alone_prompt", "cot")),
            meta=dict(data["meta"]),
        )
