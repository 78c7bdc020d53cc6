"""Choosing one query's DAG: generate ``M`` candidates, score them in one batch, pick.

:class:`TopologyChooser` is what a controller-side planner wraps (next to Stage 1's
:class:`~hieramas.learner.planning.PolicyPlanner`): given the query embedding and the
Stage-1 assignment (an action per slot), it generates ``candidates`` DAGs over the
layout's nodes (:mod:`.dags`), scores all of them with one forward pass of a frozen
:class:`~hieramas.learner.classifier.DagClassifierNet`, and returns the best, with its
edges by node name ready for the controller's ``Assignment``.  The scored adjacency
is the one that runs: the candidates are DAGs over the nodes that run (a node whose
synthesizer is ``skip`` has no edge, as ``build_plan`` drops them), drawn over those nodes
so that they stay connected and distinct.  Thread-safe: the net is frozen
and the generator is seeded per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.dags import DagBatch, generate_active
from hieramas.learner.graphdata import active_nodes, node_actions

__all__ = ["TopologyChoice", "TopologyChooser"]


@dataclass(frozen=True)
class TopologyChoice:
    """The candidates of one query, their scores, and the chosen one(s)."""

    candidates: DagBatch
    scores: npt.NDArray[np.float32]
    ranked: tuple[int, ...]
    """Candidate indices, best first (the top ``top_k``)."""

    @property
    def best(self) -> int:
        return self.ranked[0]

    @property
    def edges(self) -> list[tuple[str, str]]:
        """The best candidate's edges, ``(src, dst)`` by node name."""
        return self.candidates.edges(self.best)


class TopologyChooser:
    """Scores ``candidates`` random DAGs per query with a frozen classifier (see above)."""

    def __init__(
        self,
        net: DagClassifierNet,
        *,
        candidates: int = 200,
        d_min: float = 0.3,
        d_max: float = 0.7,
        top_k: int = 1,
        version: int | None = None,
    ) -> None:
        if candidates < 1 or top_k < 1:
            raise ValueError("candidates and top_k must be ≥ 1")
        self.net = net.eval().requires_grad_(False)
        self.candidates = candidates
        self.d_min, self.d_max = d_min, d_max
        self.top_k = top_k
        self.version = version
        self.nodes = net.layout.nodes

    def choose(self, query: torch.Tensor, actions: Sequence[int], *, seed: int) -> TopologyChoice:
        """The best of ``candidates`` DAGs for one query embedding ``[d]`` and Stage-1
        action sequence (layout slot order); candidates seeded by ``seed``."""
        acts = node_actions(self.net.layout, actions)
        active = active_nodes(self.net.layout, acts).numpy()
        adj = generate_active(
            active, self.candidates, seed=seed, d_min=self.d_min, d_max=self.d_max
        )
        return self.rank(query, acts, DagBatch(self.nodes, adj))

    def rank(self, query: torch.Tensor, acts: torch.Tensor, batch: DagBatch) -> TopologyChoice:
        """Score given candidates (``acts``: :func:`node_actions` ``[n, K]``)."""
        scores = self.net.score_numpy(query, acts, batch.adjacency)
        k = min(self.top_k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        ranked = tuple(int(i) for i in top[np.argsort(-scores[top], kind="stable")])
        return TopologyChoice(batch, scores, ranked)
