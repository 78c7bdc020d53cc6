"""The per-edge baseline (GPTSwarm / G-Designer style): independent Bernoulli edge logits
trained by REINFORCE, against which the Stage-2 classifier is compared.

One logit per forward edge ``i → j`` (``i < j`` in the layout's node order, so every
sample is a DAG), shared by all queries (not conditioned on the query).  A query's ``K``
samples are executed and graded; the update is REINFORCE with the query's mean reward as
the baseline and the advantages normalised by their spread:
``θ += lr · mean_k A_k · (x_k − σ(θ))`` over the edges between supernodes that ran.
At evaluation it runs its most likely DAG (every edge with ``σ(θ) > 0.5``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["EdgeReinforce"]

BoolArray = npt.NDArray[np.bool_]


class EdgeReinforce:
    """Independent Bernoulli edges over ``n`` nodes, trained by REINFORCE (see above)."""

    def __init__(self, n: int, *, lr: float = 0.5, seed: int = 0) -> None:
        self.theta = np.zeros((n, n))
        self.forward = np.triu(np.ones((n, n), dtype=bool), k=1)
        self.lr = lr
        self.rng = np.random.default_rng(seed)
        self.updates = 0

    def probs(self) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-self.theta))
        return np.where(self.forward, out, 0.0)

    def _allowed(self, active: BoolArray) -> BoolArray:
        allowed: BoolArray = self.forward & active[:, None] & active[None, :]
        return allowed

    def sample(self, active: BoolArray, k: int) -> BoolArray:
        """``k`` DAGs ``[k, n, n]`` drawn edge by edge over the ``active`` nodes."""
        n = len(self.theta)
        draws: BoolArray = self.rng.random((k, n, n)) < self.probs()[None]
        return draws & self._allowed(active)[None]

    def greedy(self, active: BoolArray) -> BoolArray:
        """The most likely DAG over the ``active`` nodes."""
        best: BoolArray = (self.probs() > 0.5) & self._allowed(active)
        return best

    def update(self, adjacency: BoolArray, rewards: Sequence[float], active: BoolArray) -> None:
        """One REINFORCE step from one query's executed samples and their rewards."""
        r = np.asarray(rewards, dtype=float)
        if len(r) < 2:
            return
        adv = r - r.mean()
        spread = adv.std()
        if spread > 1e-9:
            adv = adv / spread
        grad = (adv[:, None, None] * (adjacency.astype(float) - self.probs()[None])).mean(axis=0)
        self.theta += self.lr * grad * self._allowed(active)
        self.updates += 1
