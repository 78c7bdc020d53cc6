"""Stage-2 data as tensors: executed candidates per query, and PyG batches built from them.

Shapes: ``Q`` queries, ``C`` candidates (DAGs executed or to score), ``n`` supernodes,
``K`` = 1 + the most proposer slots a supernode has, ``d`` embedding size.

A :class:`CandidateSet` holds what the classifier learns from, compactly: one query
embedding and one Stage-1 assignment per query, and per candidate only its adjacency
(over the layout's node order, the order the runtime executes; see :mod:`.dags`), the
query it belongs to, its reward and its label.  Node features are assembled by the
classifier from indices (role of the node, LLMs in its slots), so a candidate costs
``n²`` bits, not ``n × features`` floats.

:func:`node_actions` turns a Stage-1 action sequence (one action per slot, in
:class:`~hieramas.learner.slots.SlotLayout` order) into ``[n, K]``: column 0 the
synthesizer's action, then the proposers', ``-1`` padding.  :func:`dag_batch` turns
``[G, n, n]`` adjacencies into one PyG :class:`~torch_geometric.data.Batch` (edge
``i → j`` is ``edge_index[:, e] = (i, j)``: PyG's default flow, source to target, so a
node aggregates what its predecessors send) without a per-graph Python loop.
:func:`label_top_k` makes the paper's per-query relative labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Batch

from hieramas.controller.config import SKIP
from hieramas.learner.slots import SlotLayout

__all__ = [
    "CandidateSet",
    "QueryGroups",
    "active_nodes",
    "dag_batch",
    "label_top_k",
    "node_actions",
]


def node_actions(layout: SlotLayout, actions: Sequence[int]) -> torch.Tensor:
    """``[n, K]`` long: per supernode (layout order) its synthesizer's then its proposers'
    action indices, ``-1`` where a supernode has fewer proposer slots."""
    nodes = layout.nodes
    width = 1 + max(
        (sum(1 for s in layout.slots if s.node == node and s.kind == "proposer") for node in nodes),
        default=0,
    )
    out = torch.full((len(nodes), width), -1, dtype=torch.long)
    row = {node: i for i, node in enumerate(nodes)}
    for slot, a in zip(layout.slots, actions, strict=True):
        if slot.kind == "synthesizer":
            out[row[slot.node], 0] = a
        elif slot.kind == "proposer":
            out[row[slot.node], 1 + slot.index] = a
    return out


def active_nodes(layout: SlotLayout, node_acts: torch.Tensor) -> torch.Tensor:
    """``[..., n]`` bool: the supernodes whose synthesizer is not ``skip`` (they run)."""
    return node_acts[..., 0] != layout.action_index(SKIP)


def dag_batch(adjacency: torch.Tensor, x: torch.Tensor | None = None) -> Batch:
    """One PyG ``Batch`` of ``G`` graphs from ``adjacency [G, n, n]`` (bool).

    ``x`` (``[G * n, F]``), when given, becomes the batch's node features.  Node ``i`` of
    graph ``g`` is row ``g * n + i``; ``batch``/``ptr`` are set, so PyG pooling works.
    """
    g, n, _ = adjacency.shape
    graph, src, dst = adjacency.nonzero(as_tuple=True)
    edge_index = torch.stack([graph * n + src, graph * n + dst])
    batch = torch.arange(g).repeat_interleave(n)
    ptr = torch.arange(g + 1) * n
    out = Batch(edge_index=edge_index, batch=batch, ptr=ptr, num_nodes=g * n)
    if x is not None:
        out.x = x
    return out


def label_top_k(
    rewards: torch.Tensor,
    query_index: torch.Tensor,
    *,
    top_k: int = 2,
    cost: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's labels: 1 for a candidate among the ``top_k`` rewards of its query whose
    reward is > 0, else 0.  ``[C]`` float.  Equal rewards are ranked by ``cost`` (``[C]``,
    cheaper first) when given, then by position: a cost-aware reward that floors (every
    correct candidate of a cheap query at the solved floor) would otherwise label whichever
    candidates came first."""
    groups = QueryGroups.of(query_index)
    dense = groups.dense(rewards, fill=float("-inf"))  # [Q, Kmax]
    if cost is None:
        order = torch.argsort(dense, dim=1, descending=True, stable=True)
    else:  # by cost, then (stably) by reward: reward first, cost breaks its ties
        by_cost = torch.argsort(groups.dense(cost, fill=float("inf")), dim=1, stable=True)
        by_reward = torch.argsort(
            torch.gather(dense, 1, by_cost), dim=1, descending=True, stable=True
        )
        order = torch.gather(by_cost, 1, by_reward)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(dense.shape[1]).expand_as(order))
    per_candidate = rank[groups.query, groups.slot]
    return ((per_candidate < top_k) & (rewards > 0)).float()


@dataclass(frozen=True)
class QueryGroups:
    """Candidates grouped by query, for per-query losses and metrics (no Python loop).

    ``query [C]`` is each candidate's query, ``slot [C]`` its position within the query,
    ``width`` the most candidates a query has; :meth:`dense` scatters a ``[C]`` tensor
    into ``[Q, width]``, :attr:`mask` marks the real entries.
    """

    query: torch.Tensor
    slot: torch.Tensor
    n_queries: int
    width: int

    @classmethod
    def of(cls, query_index: torch.Tensor, n_queries: int | None = None) -> QueryGroups:
        q = query_index.long()
        n_q = int(q.max()) + 1 if n_queries is None and len(q) else (n_queries or 0)
        order = torch.argsort(q, stable=True)
        counts = torch.bincount(q, minlength=n_q)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(q)
        slot[order] = torch.arange(len(q)) - starts[q[order]]
        return cls(q, slot, n_q, int(counts.max()) if len(q) else 0)

    def dense(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``values [C]`` as ``[Q, width]``, ``fill`` where a query has fewer candidates."""
        out = torch.full((self.n_queries, self.width), fill, dtype=values.dtype)
        out[self.query, self.slot] = values
        return out

    @property
    def mask(self) -> torch.Tensor:
        """``[Q, width]`` bool: a real candidate."""
        out = torch.zeros((self.n_queries, self.width), dtype=torch.bool)
        out[self.query, self.slot] = True
        return out


@dataclass(frozen=True)
class CandidateSet:
    """Executed (or synthetic) candidates with their queries; see the module docstring.

    ``query [Q, d]`` float; ``actions [Q, n, K]`` long (:func:`node_actions`);
    ``adjacency [C, n, n]`` bool; ``query_index [C]`` long; ``reward [C]`` and
    ``label [C]`` float.
    """

    query: torch.Tensor
    actions: torch.Tensor
    adjacency: torch.Tensor
    query_index: torch.Tensor
    reward: torch.Tensor
    label: torch.Tensor

    def __post_init__(self) -> None:
        c = len(self.adjacency)
        n = self.actions.shape[1]
        if self.adjacency.shape[1:] != (n, n) or self.adjacency.dtype != torch.bool:
            raise ValueError(f"adjacency must be bool [C, {n}, {n}]")
        if len(self.query) != len(self.actions):
            raise ValueError("one query embedding and one assignment per query")
        if not (len(self.query_index) == len(self.reward) == len(self.label) == c):
            raise ValueError("query_index, reward and label need one entry per candidate")
        if c and (int(self.query_index.min()) < 0 or int(self.query_index.max()) >= len(self)):
            raise ValueError("query_index out of range")

    def __len__(self) -> int:
        """The number of queries."""
        return len(self.query)

    @property
    def n_candidates(self) -> int:
        return len(self.adjacency)

    def subset(self, queries: torch.Tensor | Sequence[int]) -> CandidateSet:
        """The queries at ``queries`` (renumbered 0..) and all their candidates."""
        keep_q = torch.as_tensor(queries, dtype=torch.long)
        remap = torch.full((len(self),), -1, dtype=torch.long)
        remap[keep_q] = torch.arange(len(keep_q))
        new_index = remap[self.query_index]
        keep_c = new_index >= 0
        return CandidateSet(
            query=self.query[keep_q],
            actions=self.actions[keep_q],
            adjacency=self.adjacency[keep_c],
            query_index=new_index[keep_c],
            reward=self.reward[keep_c],
            label=self.label[keep_c],
        )

    def split(self, fraction: float, *, seed: int) -> tuple[CandidateSet, CandidateSet]:
        """A seeded split by query: (``1 − fraction`` of the queries, ``fraction``)."""
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=gen)
        cut = len(self) - max(1, round(fraction * len(self)))
        return self.subset(perm[:cut].sort().values), self.subset(perm[cut:].sort().values)

    @classmethod
    def from_numpy(
        cls,
        query: np.ndarray,
        actions: np.ndarray,
        adjacency: np.ndarray,
        query_index: np.ndarray,
        reward: np.ndarray,
        label: np.ndarray | None = None,
        *,
        top_k: int = 2,
        cost: np.ndarray | None = None,
    ) -> CandidateSet:
        """From arrays; ``label`` defaults to :func:`label_top_k` of ``reward`` (ties to the
        lower ``cost``, when given)."""
        qi = torch.as_tensor(query_index, dtype=torch.long)
        r = torch.as_tensor(reward, dtype=torch.float32)
        c = None if cost is None else torch.as_tensor(cost, dtype=torch.float32)
        lab = (
            torch.as_tensor(label, dtype=torch.float32)
            if label is not None
            else label_top_k(r, qi, top_k=top_k, cost=c)
        )
        return cls(
            query=torch.as_tensor(query, dtype=torch.float32),
            actions=torch.as_tensor(actions, dtype=torch.long),
            adjacency=torch.as_tensor(adjacency, dtype=torch.bool),
            query_index=qi,
            reward=r,
            label=lab,
        )
