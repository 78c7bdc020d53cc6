"""Candidate DAGs for Stage 2: a seeded, vectorised generator and the batch it returns.

A DAG over ``n`` supernodes is an adjacency matrix ``adj[i, j]`` (``i → j``) whose
indices are the **plan's node order** (the config's supernode order, as in
:attr:`~hieramas.learner.slots.SlotLayout.nodes`).  The edges a runtime executes are
read off that matrix by :meth:`DagBatch.edges` and go unchanged into the controller's
:class:`~hieramas.controller.planner.Assignment`, so the DAG that is scored is the DAG
that runs (the paper's code executed a fixed order and dropped later→earlier edges).
A supernode the Stage-1 policy drops (synthesizer ``skip``) takes its edges with it at
run time; :func:`active_adjacency` gives the adjacency that then runs, which is what
should be scored.

Generation, per candidate (as in the paper, without its defects):

1. a random topological order of the nodes;
2. a spanning tree: the node at position ``k ≥ 1`` gets an edge from a uniformly
   chosen earlier position;
3. extra forward edges (earlier → later position), chosen uniformly among the
   remaining pairs, until the DAG has ``max(n − 1, round(d · n(n − 1)/2))`` edges,
   with the density ``d ~ U(d_min, d_max)`` drawn per candidate;
4. duplicates (the same adjacency) dropped, the first occurrence kept.

Everything is numpy over the whole batch (no per-candidate Python loop), and the
result is a function of ``(n, count, seed, d_min, d_max)`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BoolArray",
    "DagBatch",
    "DagError",
    "active_adjacency",
    "chain_adjacency",
    "edges_of",
    "full_adjacency",
    "generate_active",
    "generate_dags",
    "is_acyclic",
    "longest_path",
]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_ROUNDS = 8
"""Generation rounds before giving up on filling ``count`` distinct DAGs (small ``n``)."""


class DagError(ValueError):
    """Bad generator arguments or an adjacency that is not a DAG over the nodes."""


def generate_dags(
    n: int,
    count: int,
    *,
    seed: int,
    d_min: float = 0.3,
    d_max: float = 0.7,
    unique: bool = True,
) -> BoolArray:
    """``count`` random connected DAGs over ``n`` nodes: bool ``[count, n, n]``.

    With ``unique`` (default) the DAGs are pairwise distinct; when ``n`` is so small that
    fewer than ``count`` distinct DAGs turn up in a few rounds of sampling, fewer are
    returned (never a duplicate).  Deterministic for ``seed``.
    """
    if n < 1:
        raise DagError(f"a DAG needs at least one node, got n={n}")
    if count < 0:
        raise DagError(f"count must be ≥ 0, got {count}")
    if not 0.0 <= d_min <= d_max <= 1.0:
        raise DagError(f"need 0 ≤ d_min ≤ d_max ≤ 1, got d_min={d_min}, d_max={d_max}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, n, 0x5DA6]))
    if not unique:
        return _sample(rng, n, count, d_min, d_max)
    kept = np.zeros((0, n, n), dtype=bool)
    kept_keys = _keys(kept)
    for _ in range(_ROUNDS):
        need = count - len(kept)
        if need <= 0:
            break
        fresh = _sample(rng, n, need + need // 4 + 8, d_min, d_max)
        keys = np.concatenate([kept_keys, _keys(fresh)])
        _, first = np.unique(keys, return_index=True)  # first occurrence of each DAG
        first.sort()  # generation order, so the result does not depend on sort order
        take = first[first >= len(kept)][:need] - len(kept)
        kept = np.concatenate([kept, fresh[take]])
        kept_keys = np.concatenate([kept_keys, keys[len(kept_keys) + take]])
    return kept


def _keys(adj: BoolArray) -> npt.NDArray[Any]:
    """One fixed-size key per adjacency (its bits packed), for ``np.unique``: a ``uint64``
    when ``n² ≤ 64`` (fast to sort), else an opaque byte string."""
    packed = np.packbits(adj.reshape(len(adj), adj.shape[1] ** 2), axis=1)
    if packed.shape[1] <= 8:
        wide = np.zeros((len(adj), 8), dtype=np.uint8)
        wide[:, : packed.shape[1]] = packed
        return wide.view(np.uint64).ravel()
    packed = np.ascontiguousarray(packed)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


def _sample(rng: np.random.Generator, n: int, m: int, d_min: float, d_max: float) -> BoolArray:
    """``m`` DAGs, duplicates allowed (see the module docstring for the steps)."""
    out = np.zeros((m, n, n), dtype=bool)
    if n == 1 or m == 0:
        return out
    order = np.argsort(rng.random((m, n)), axis=1)  # order[c, k]: the node at position k
    iu, ju = np.triu_indices(n, k=1)  # forward pairs of positions, i < j
    pairs = len(iu)
    # spanning tree: position k's parent is uniform over positions < k
    k = np.arange(1, n)
    parent = np.floor(rng.random((m, n - 1)) * k).astype(np.int64)
    tree = np.zeros((m, n, n), dtype=bool)
    tree[np.arange(m)[:, None], parent, k[None, :]] = True
    # rank the forward pairs: tree edges first (key -1), the rest in random order
    keys = rng.random((m, pairs))
    keys[tree[:, iu, ju]] = -1.0
    ranks = np.empty((m, pairs), dtype=np.int64)
    np.put_along_axis(ranks, np.argsort(keys, axis=1), np.arange(pairs)[None, :], axis=1)
    density = rng.uniform(d_min, d_max, size=m)
    target = np.maximum(n - 1, np.rint(density * pairs).astype(np.int64))
    chosen = ranks < target[:, None]  # [m, pairs] in position space
    rows = np.arange(m)[:, None]
    out[rows, order[:, iu], order[:, ju]] = chosen
    return out


def full_adjacency(n: int) -> BoolArray:
    """The complete forward DAG in node order (``i → j`` for every ``i < j``): ``[n, n]``."""
    return np.triu(np.ones((n, n), dtype=bool), k=1)


def chain_adjacency(n: int) -> BoolArray:
    """The chain ``0 → 1 → … → n−1`` in node order: ``[n, n]``."""
    return np.eye(n, k=1, dtype=bool)


def active_adjacency(adj: BoolArray, active: BoolArray) -> BoolArray:
    """The edges that run when only ``active`` nodes do (``[..., n]`` bool): an edge is kept
    iff both its ends are active, as the controller's ``build_plan`` does."""
    keep: BoolArray = active[..., :, None] & active[..., None, :]
    return adj & keep


def generate_active(
    active: BoolArray,
    count: int,
    *,
    seed: int,
    d_min: float = 0.3,
    d_max: float = 0.7,
) -> BoolArray:
    """``count`` (or fewer, when fewer exist) distinct DAGs over the ``active`` nodes only,
    as ``[count, n, n]`` over all ``n`` (no edge touches an inactive node).

    Generating over all nodes and then dropping the inactive ones' edges (what runs) would
    leave sparser, often identical candidates; this draws connected DAGs over the nodes
    that run.  With fewer than two active nodes there is one candidate, without edges.
    """
    idx = np.flatnonzero(active)
    n = len(active)
    if len(idx) < 2:
        return np.zeros((1, n, n), dtype=bool)
    sub = generate_dags(len(idx), count, seed=seed, d_min=d_min, d_max=d_max)
    out = np.zeros((len(sub), n, n), dtype=bool)
    out[:, idx[:, None], idx[None, :]] = sub
    return out


def is_acyclic(adj: BoolArray) -> bool:
    """Whether ``adj [n, n]`` has no cycle (no self-loop either)."""
    remaining = np.ones(len(adj), dtype=bool)
    while remaining.any():
        sources = remaining & ~(adj[remaining].any(axis=0))
        if not sources.any():
            return False
        remaining &= ~sources
    return True


def longest_path(adj: BoolArray) -> IntArray:
    """The depth of every DAG of ``adj [..., n, n]``: edges on its longest path, ``[...]``.

    Vectorised over the batch: ``n`` rounds of ``depth[j] = max_i adj[i, j]·(depth[i]+1)``.
    """
    depth = np.zeros(adj.shape[:-1], dtype=np.int64)
    a = adj.astype(np.int64)
    for _ in range(adj.shape[-1]):
        depth = np.max(a * (depth[..., :, None] + 1), axis=-2)
    result: IntArray = depth.max(axis=-1)
    return result


def edges_of(adj: BoolArray, nodes: Sequence[str]) -> list[tuple[str, str]]:
    """The edges of one adjacency ``[n, n]`` as ``(src, dst)`` node names, row-major."""
    src, dst = np.nonzero(adj)
    return [(nodes[i], nodes[j]) for i, j in zip(src.tolist(), dst.tolist(), strict=True)]


@dataclass(frozen=True)
class DagBatch:
    """Candidate DAGs over named nodes (indices = the plan's node order).

    ``adjacency[c, i, j]``: candidate ``c`` has the edge ``nodes[i] → nodes[j]``.
    """

    nodes: tuple[str, ...]
    adjacency: BoolArray

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if self.adjacency.ndim != 3 or self.adjacency.shape[1:] != (n, n):
            raise DagError(f"adjacency must be [count, {n}, {n}], got {self.adjacency.shape}")
        if len(set(self.nodes)) != n:
            raise DagError("duplicate node names")

    @classmethod
    def generate(
        cls,
        nodes: Sequence[str],
        count: int,
        *,
        seed: int,
        d_min: float = 0.3,
        d_max: float = 0.7,
    ) -> DagBatch:
        """``count`` distinct random DAGs over ``nodes`` (see :func:`generate_dags`)."""
        adj = generate_dags(len(nodes), count, seed=seed, d_min=d_min, d_max=d_max)
        return cls(tuple(nodes), adj)

    @classmethod
    def of(cls, nodes: Sequence[str], adjacencies: Sequence[BoolArray]) -> DagBatch:
        """A batch of given adjacencies (each ``[n, n]``), e.g. full and chain."""
        n = len(nodes)
        stacked = np.stack(list(adjacencies)) if adjacencies else np.zeros((0, n, n), bool)
        return cls(tuple(nodes), stacked.astype(bool))

    def __len__(self) -> int:
        return len(self.adjacency)

    def edges(self, c: int) -> list[tuple[str, str]]:
        """Candidate ``c``'s edges by node name: what goes into an ``Assignment``."""
        return edges_of(self.adjacency[c], self.nodes)

    def edge_counts(self) -> IntArray:
        """Edges per candidate, ``[count]``."""
        counts: IntArray = self.adjacency.sum(axis=(1, 2)).astype(np.int64)
        return counts

    def densities(self) -> npt.NDArray[np.float64]:
        """Edges per candidate over ``n(n−1)/2``, ``[count]`` (1.0 for a single node)."""
        n = len(self.nodes)
        pairs = n * (n - 1) / 2
        return self.edge_counts() / pairs if pairs else np.ones(len(self))

    def depths(self) -> IntArray:
        """Longest-path length (in edges) per candidate, ``[count]``."""
        return longest_path(self.adjacency)

    def select(self, index: Sequence[int] | IntArray) -> DagBatch:
        """The candidates at ``index``, in that order."""
        return DagBatch(self.nodes, self.adjacency[np.asarray(index, dtype=np.int64)])
