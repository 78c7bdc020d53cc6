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
import numpy.typing as npt

from hieramas.controller.config import HieraConfig
from hieramas.controller.planner import Assignment
from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.policy import Decision, DecodeMode, Policy
from hieramas.learner.slots import SlotAssignment

__all__ = ["PlanRequestLike", "PlannedQuery", "PolicyPlanner", "pack_embedding", "unpack_embedding"]


def pack_embedding(vector: npt.NDArray[np.float32] | None) -> bytes | None:
    """A query embedding as it rides in a trace: float16, little-endian (768 bytes for
    MiniLM's 384 dimensions; the rounding is ~1e-3 of an L2-normalised vector)."""
    return None if vector is None else np.asarray(vector, dtype="<f2").tobytes()


def unpack_embedding(data: bytes | None, dim: int) -> npt.NDArray[np.float32] | None:
    """:func:`pack_embedding`'s vector as float32; ``None`` if absent, not ``dim`` long, or
    not the L2-normalised vector an embedder makes (it came over the wire)."""
    if data is None or len(data) != 2 * dim:
        return None
    vector = np.frombuffer(data, dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector if 0.99 <= norm <= 1.01 else None  # NaN and inf fail this too


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
    embedding: npt.NDArray[np.float32] | None = None
    """The query embedding the policy read."""

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
        embedding = query.numpy()
        if explore:
            with self._lock:
                decision = self.policy.decide(
                    query, "sample", temperature=self.temperature, rng=self._rng
                )
        else:
            decision = self.policy.decide(query, self.mode)
        return PlannedQuery(self.policy.assignment(decision), decision, self.version, embedding)

    def assign(self, config: HieraConfig, request: str | PlanRequestLike) -> Assignment:
        """The controller's planning call: the config's edges, sampled if the request explores
        (then with its temperature and per-slot log-probabilities, for the trace).

        ``request`` is a task text or a ``PlanRequest``-like object.
        """
        return self.plan_assignment(config, request)[1]

    def plan_assignment(
        self, config: HieraConfig, request: str | PlanRequestLike
    ) -> tuple[PlannedQuery, Assignment]:
        """:meth:`assign`, with the :class:`PlannedQuery` it came from (its actions and
        query embedding, which Stage 2 scores DAGs with)."""
        if isinstance(request, str):
            text, explore = request, False
        else:
            text, explore = request.task_text, request.explore
        planned = self.plan(text, explore=explore)
        a = planned.assignment
        carried = planned.explore and planned.embedding is not None
        return planned, Assignment(
            proposers={n: list(p) for n, p in a.proposers.items()},
            synthesizers=dict(a.synthesizers),
            edges=list(config.edges),
            policy_version=self.version,
            sampled=planned.explore,
            temperature=planned.decision.temperature if planned.explore else None,
            log_probs=planned.decision.slot_log_probs if planned.explore else None,
            # a training query carries its embedding to the learner, which need not redo it
            query_embedding=pack_embedding(planned.embedding) if carried else None,
            embedder=self.embedder.name if carried else None,
        )
