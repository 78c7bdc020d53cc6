"""Planning queries with a policy: embed the task (cached), decide, name the LLMs.

:class:`PolicyPlanner` is the piece a controller-side planner wraps: it holds one
frozen policy version and its embedder, and turns a task text into a
:class:`PlannedQuery` (the per-slot assignment plus how it was chosen, which the
query's trace must carry for the learner).  It also satisfies the controller's
``Planner`` protocol through :meth:`PolicyPlanner.assign`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hieramas.controller.config import HieraConfig
from hieramas.controller.planner import Assignment
from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.policy import Decision, DecodeMode, Policy
from hieramas.learner.slots import SlotAssignment

__all__ = ["PlanRequestLike", "PlannedQuery", "PolicyPlanner"]


class PlanRequestLike(Protocol):
    """What a planner is told of one query (the controller's ``PlanRequest``)."""

    @property
    def task_text(self) -> str:
        """The text to plan for (embedded as the query)."""
        ...

    @property
    def explore(self) -> bool:
        """A training query: sample the assignment."""
        ...


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    """One query's plan from a policy version (``explore``: sampled, for training)."""

    assignment: SlotAssignment
    decision: Decision
    policy_version: int | None

    @property
    def explore(self) -> bool:
        """Whether the assignment was sampled."""
        return self.decision.explore


class PolicyPlanner:
    """Plans with one policy version: ``mode`` for normal queries, sampling when exploring.

    ``policy`` should be a snapshot (:meth:`Policy.snapshot`) nobody trains in
    place.  Thread-safe: the only shared mutable state, the sampling RNG, is locked.
    """

    def __init__(
        self,
        policy: Policy,
        embedder: TextEmbedder,
        *,
        mode: DecodeMode = "greedy",
        temperature: float = 1.0,
        version: int | None = None,
        seed: int | Sequence[int] | None = None,
    ) -> None:
        if mode == "sample":
            raise ValueError("mode is the non-exploring decoder: 'greedy' or 'rotation'")
        self.policy = policy
        self.embedder = embedder
        self.mode: DecodeMode = mode
        self.temperature = temperature
        self.version = version
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def plan(self, task_text: str, *, explore: bool = False) -> PlannedQuery:
        """The assignment for ``task_text``; sampled at :attr:`temperature` if ``explore``."""
        query = self.embedder.embed([task_text])[0]
        if explore:
            with self._lock:
                decision = self.policy.decide(
                    query, "sample", temperature=self.temperature, rng=self._rng
                )
        else:
            decision = self.policy.decide(query, self.mode)
        return PlannedQuery(self.policy.assignment(decision), decision, self.version)

    def assign(self, config: HieraConfig, request: str | PlanRequestLike) -> Assignment:
        """The controller's planning call: the config's edges, sampled if the request explores
        (then with its temperature and per-slot log-probabilities, for the trace).

        ``request`` is a task text or a ``PlanRequest``-like object.
        """
        if isinstance(request, str):
            text, explore = request, False
        else:
            text, explore = request.task_text, request.explore
        planned = self.plan(text, explore=explore)
        a = planned.assignment
        return Assignment(
            proposers={n: list(p) for n, p in a.proposers.items()},
            synthesizers=dict(a.synthesizers),
            edges=list(config.edges),
            policy_version=self.version,
            sampled=planned.explore,
            temperature=planned.decision.temperature if planned.explore else None,
            log_probs=planned.decision.slot_log_probs if planned.explore else None,
        )
