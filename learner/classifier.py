"""The Stage-2 graph classifier: a score for each (query, candidate DAG) pair.

Shapes: ``G`` graphs, ``Q`` queries, ``n`` supernodes, ``K`` slot columns per supernode
(:func:`~hieramas.learner.graphdata.node_actions`), ``d`` embedding size, ``H`` hidden.

Node features (one row per supernode of a candidate) come from indices into buffers
embedded once, as in Stage 1's :class:`~hieramas.learner.policy.PolicyNet`::

    x[q, i] = GELU(W_q·query[q] + W_r·role_text[role(i)] + mean_p W_p·action_text[prop_p(i)]
                   + W_s·action_text[synth(i)] + node_id[i])                        [Q, n, H]

so the role embedding, the embeddings of the LLMs the Stage-1 policy put in the node's
slots, and the query embedding all enter (projected, then summed: the same as a linear
layer over their concatenation, without materialising it).  A dropped supernode
(synthesizer ``skip``) keeps its row but loses its edges, as at run time.

Then ``layers`` rounds of message passing **along** the edge direction (PyG's
source-to-target flow: node ``j`` aggregates its predecessors ``i`` of ``i → j``), with
``GATv2Conv`` (default) or mean ``GraphConv``, each residual; mean and max pooling; and an
MLP head over ``[mean, max, W_q·query, density, depth / n]`` gives one logit per graph.

All candidates of one query share their node features: :meth:`DagClassifierNet.score_query`
computes them once and scores ``M`` candidates in one batched forward pass.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import GATv2Conv, GraphConv, global_max_pool, global_mean_pool

from hieramas.controller.config import HieraConfig
from hieramas.learner.dags import BoolArray, longest_path
from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.graphdata import active_nodes, dag_batch
from hieramas.learner.profiles import action_profiles, role_texts
from hieramas.learner.slots import SlotLayout

__all__ = ["ConvKind", "DagClassifierNet", "graph_stats"]

ConvKind = Literal["gatv2", "graph"]


def graph_stats(adjacency: torch.Tensor) -> torch.Tensor:
    """``[G, 2]``: edge density (over ``n(n−1)/2``) and longest path / n, per graph."""
    n = adjacency.shape[-1]
    pairs = max(1, n * (n - 1) // 2)
    density = adjacency.sum(dim=(1, 2)).float() / pairs
    adj_np: BoolArray = adjacency.numpy()
    depth = torch.from_numpy(longest_path(adj_np)).float() / max(1, n)
    return torch.stack([density, depth], dim=1)


class DagClassifierNet(nn.Module):
    """Scores (query, DAG) pairs for one slot layout; see the module docstring."""

    role_text: torch.Tensor
    action_text: torch.Tensor
    node_role: torch.Tensor

    def __init__(
        self,
        layout: SlotLayout,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        conv: ConvKind = "gatv2",
        heads: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.dim, self.hidden, self.n_layers = dim, hidden, layers
        self.conv_kind: ConvKind = conv
        self.heads = heads
        self.dropout = dropout
        nodes = layout.nodes
        roles = layout.roles
        node_role = [roles.index(next(s.role for s in layout.slots if s.node == n)) for n in nodes]
        # filled by create() (or a checkpoint): role and action texts, embedded once
        self.register_buffer("role_text", torch.zeros(len(roles), dim))
        self.register_buffer("action_text", torch.zeros(len(layout.actions), dim))
        self.register_buffer("node_role", torch.tensor(node_role), persistent=False)
        self._skip = layout.action_index("skip")
        self.query_proj = nn.Linear(dim, hidden)
        self.role_proj = nn.Linear(dim, hidden, bias=False)
        self.proposer_proj = nn.Linear(dim, hidden, bias=False)
        self.synth_proj = nn.Linear(dim, hidden, bias=False)
        self.node_id = nn.Embedding(len(nodes), hidden)
        nn.init.normal_(self.node_id.weight, std=0.1)
        self.convs = nn.ModuleList(
            [
                GATv2Conv(hidden, hidden, heads=heads, concat=False, add_self_loops=False)
                if conv == "gatv2"
                else GraphConv(hidden, hidden, aggr="mean")
                for _ in range(layers)
            ]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])
        self.head = nn.Sequential(
            nn.Linear(3 * hidden + 2, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    @classmethod
    def create(
        cls,
        config: HieraConfig,
        embedder: TextEmbedder,
        *,
        layout: SlotLayout | None = None,
        seed: int = 0,
        **kw: object,
    ) -> DagClassifierNet:
        """A fresh classifier for ``config``: role and LLM profile texts embedded now."""
        layout = layout or SlotLayout.from_config(config)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = cls(layout, embedder.dim, **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            net.role_text.copy_(embedder.embed(role_texts(layout, config.domain)))
            net.action_text.copy_(embedder.embed(action_profiles(config, layout)))
        return net

    @property
    def n_nodes(self) -> int:
        return len(self.node_role)

    def hyper(self) -> dict[str, object]:
        """The constructor's keyword arguments (stored in checkpoints)."""
        return {
            "hidden": self.hidden,
            "layers": self.n_layers,
            "conv": self.conv_kind,
            "heads": self.heads,
            "dropout": self.dropout,
        }

    # -- pieces ---------------------------------------------------------------------

    def node_inputs(self, query: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``query [Q, d]``, ``actions [Q, n, K]`` → node states before message passing
        ``[Q, n, H]``, and the projected query (``[Q, H]``) as the second output."""
        q = self.query_proj(query)  # [Q, H]
        roles = self.role_proj(self.role_text)[self.node_role]  # [n, H]
        act = self.action_text
        synth = self.synth_proj(act)[actions[..., 0].clamp(min=0)]  # [Q, n, H]
        props = actions[..., 1:]
        valid = (props >= 0).unsqueeze(-1).float()  # [Q, n, K-1, 1]
        prop_h = self.proposer_proj(act)[props.clamp(min=0)] * valid
        prop_mean = prop_h.sum(dim=2) / valid.sum(dim=2).clamp(min=1.0)
        x = q[:, None, :] + roles[None] + synth + prop_mean + self.node_id.weight[None]
        return nn.functional.gelu(x)

    def propagate(
        self, x: torch.Tensor, batch: Batch, query_h: torch.Tensor, stats: torch.Tensor
    ) -> torch.Tensor:
        """Message passing over ``batch`` from node states ``x [G·n, H]``; logits ``[G]``."""
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(h + nn.functional.gelu(conv(h, batch.edge_index)))
        size = int(batch.ptr.numel() - 1)
        pooled = torch.cat(
            [
                global_mean_pool(h, batch.batch, size=size),
                global_max_pool(h, batch.batch, size=size),
                query_h,
                stats,
            ],
            dim=1,
        )
        logits: torch.Tensor = self.head(pooled).squeeze(-1)
        return logits

    # -- whole passes ---------------------------------------------------------------

    def forward(
        self,
        query: torch.Tensor,
        actions: torch.Tensor,
        adjacency: torch.Tensor,
        query_index: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``[G]`` for candidates ``adjacency [G, n, n]`` of queries ``query_index``
        (rows of ``query [Q, d]`` / ``actions [Q, n, K]``): one batched pass."""
        nodes = self.node_inputs(query, actions)  # [Q, n, H]
        q_h = self.query_proj(query)[query_index]
        adj = self._runnable(adjacency, actions[query_index])
        x = nodes[query_index].reshape(-1, self.hidden)
        return self.propagate(x, dag_batch(adj), q_h, graph_stats(adj))

    def score_query(
        self, query: torch.Tensor, actions: torch.Tensor, adjacency: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[M]`` of ``M`` candidates ``[M, n, n]`` for one query (``query [d]``,
        ``actions [n, K]``): node inputs computed once, shared by every candidate."""
        m = len(adjacency)
        nodes = self.node_inputs(query[None], actions[None])[0]  # [n, H]
        adj = self._runnable(adjacency, actions[None])
        x = nodes.expand(m, -1, -1).reshape(-1, self.hidden)
        q_h = self.query_proj(query)[None].expand(m, -1)
        return self.propagate(x, dag_batch(adj), q_h, graph_stats(adj))

    def _runnable(self, adjacency: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The edges that run: both ends' synthesizers are not ``skip``."""
        active = active_nodes(self.layout, actions)  # [G or 1, n]
        return adjacency & active[:, :, None] & active[:, None, :]

    def score_numpy(
        self, query: torch.Tensor, actions: torch.Tensor, adjacency: BoolArray
    ) -> np.ndarray:
        """:meth:`score_query` under ``inference_mode`` from a numpy adjacency ``[M, n, n]``."""
        with torch.inference_mode():
            out = self.score_query(query, actions, torch.from_numpy(adjacency))
        return out.numpy()
