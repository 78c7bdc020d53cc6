"""Turning config + query into a :class:`~hieramas.controller.plan.Plan`.

A :class:`Planner` chooses each query's :class:`Assignment` (the LLM of every
slot, ``skip`` allowed, and the active edges) from a :class:`PlanRequest`;
:func:`build_plan` freezes it into the plan the query carries.
:class:`StaticPlanner` uses the config's own assignment; a learned policy plugs
in as :class:`~hieramas.controller.learned.LearnedPlanner`.  Planners are made
by kind in one place, :mod:`hieramas.controller.planners`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hieramas.controller.config import PSEUDO_LLMS, SKIP, HieraConfig
from hieramas.controller.plan import NodePlan, Plan
from hieramas.wire.events import AssignmentRecord, TopologyRecord
from hieramas.wire.subjects import DECISION_NODE

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = [
    "Assignment",
    "PlanRequest",
    "Planner",
    "StaticPlanner",
    "assignment_record",
    "build_plan",
]


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a planner knows of one query."""

    task_text: str
    domain: str = ""
    """The query's domain (the config's unless the query names one)."""
    query_id: str = ""
    item_id: str | None = None
    """The dataset item it asks, when the client named one."""
    explore: bool = False
    """A training query: a learned planner samples its assignment instead of being greedy."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """Per-query choices: LLM per proposer slot and synthesizer (``skip`` allowed), active edges.

    A supernode missing from ``proposers`` / ``synthesizers`` keeps the config's choice.
    ``policy_version`` names the policy that chose (``None``: no policy, e.g. static
    planning), and ``sampled`` says the choice was sampled for training rather than greedy.
    A sampled choice also records the ``temperature`` it was sampled at and each slot's
    ``log_probs`` (in the policy's slot order), so a learner can train on exactly the
    distribution it came from.  All of these go into the query's trace event.
    """

    proposers: dict[str, list[str]]
    synthesizers: dict[str, str]
    edges: list[tuple[str, str]]
    policy_version: int | None = None
    sampled: bool = False
    temperature: float | None = None
    log_probs: tuple[float, ...] | None = None
    query_embedding: bytes | None = None
    """A sampled choice's query embedding (float16, little-endian), for the learner."""
    embedder: str | None = None
    """The embedder that made ``query_embedding``."""
    topology: TopologyRecord | None = None
    """How a Stage-2 planner chose ``edges`` (classifier version, candidates, score, rank)."""
    vote: tuple[Assignment, ...] = ()
    """A top-k vote: the assignments (one DAG each, best-ranked first) the gateway runs as
    child runs of the query, answering with their voted final answer; empty: run this one."""


class Planner(Protocol):
    """Decides the assignment of each query.

    ``heavy`` planners (a torch forward pass, an embedding) are called in a thread
    pool, off the NATS loop, so ``assign`` must then be thread-safe; light ones (a
    dictionary lookup) are called on the loop.  ``kind`` is recorded in the traces.
    """

    kind: str
    heavy: bool

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        """Choose LLMs and edges for one query."""
        ...

    async def start(self, bus: Bus) -> None:
        """Called once, on the loop, before the first query (e.g. to watch for policies)."""
        ...

    async def stop(self) -> None:
        """Called once when the gateway stops."""
        ...


class StaticPlanner:
    """The config's own assignment, for every query (inline: it costs a few microseconds)."""

    kind = "static"
    heavy = False

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        return Assignment(
            proposers={n: list(s.proposers) for n, s in config.supernodes.items()},
            synthesizers={n: s.synthesizer for n, s in config.supernodes.items()},
            edges=list(config.edges),
        )

    async def start(self, bus: Bus) -> None:
        pass

    async def stop(self) -> None:
        pass


def assignment_record(config: HieraConfig, assignment: Assignment) -> AssignmentRecord:
    """The full per-slot assignment of every supernode (the config's where ``assignment``
    says nothing), and the decision LLM: what a query's trace event records."""
    return AssignmentRecord(
        proposers={
            name: list(assignment.proposers.get(name, spec.proposers))
            for name, spec in config.supernodes.items()
        },
        synthesizers={
            name: assignment.synthesizers.get(name, spec.synthesizer)
            for name, spec in config.supernodes.items()
        },
        decision=config.decision,
    )


def build_plan(
    config: HieraConfig,
    version: int,
    assignment: Assignment,
    *,
    query_id: str,
    task_text: str,
    domain: str | None = None,
    timeout_s: float | None = None,
    emulator_url: str | None = None,
    answerless_roles: tuple[str, ...] = (),
    meta: dict[str, object] | None = None,
) -> Plan:
    """Freeze one query's plan: active nodes, active edges, the LLM records it needs (workers
    look up their endpoints in the stored config version)."""
    nodes: dict[str, NodePlan] = {}
    skipped: list[str] = []
    for name, spec in config.supernodes.items():
        synth = assignment.synthesizers.get(name, spec.synthesizer)
        if synth == SKIP:
            skipped.append(name)
            continue
        slots = assignment.proposers.get(name, spec.proposers)
        nodes[name] = NodePlan(
            node=name,
            role=spec.role,
            proposers=tuple(None if llm == SKIP else llm for llm in slots),
            synthesizer=synth,
        )
    edges = [(s, d) for s, d in assignment.edges if s in nodes and d in nodes]
    for name, node in list(nodes.items()):
        nodes[name] = NodePlan(
            node=node.node,
            role=node.role,
            proposers=node.proposers,
            synthesizer=node.synthesizer,
            preds=tuple(s for s, d in edges if d == name),
            succs=tuple(d for s, d in edges if s == name),
            group=config.group_of(name),
        )
    used = {config.decision}
    for node in nodes.values():
        used.add(node.synthesizer)
        used.update(llm for llm in node.proposers if llm is not None)
    used -= PSEUDO_LLMS
    llms = {name: config.model_spec(name) for name in sorted(used)}
    endpoint_names = {spec.endpoint for spec in llms.values()}
    for name in sorted(endpoint_names):  # workers resolve them; an unusable one fails here, early
        config.endpoint_spec(name, emulator_url)
    budget = timeout_s if timeout_s is not None else config.limits.query_timeout_s
    return Plan(
        query_id=query_id,
        config_version=version,
        domain=domain or config.domain,
        task_text=task_text,
        nodes=nodes,
        decision=config.decision,
        llms=llms,
        max_tokens=config.limits.max_tokens,
        temperature=config.limits.temperature,
        node_timeout_s=min(config.limits.node_timeout_s, budget),
        deadline_unix=time.time() + budget,
        skipped_nodes=tuple(skipped),
        answerless_roles=answerless_roles,
        emulated=any(config.endpoints[e].kind == "emulator" for e in endpoint_names),
        decision_group=config.group_of(DECISION_NODE),
        alone_prompt=config.alone_prompt,
        meta=dict(meta or {}),
    )
