"""Training the Stage-2 classifier: two losses, per-query validation, early stopping.

Minibatches are sets of whole queries (all their candidates), so the pairwise loss can
compare candidates of one query.  Each step is one batched forward pass over a PyG
``Batch`` of all the minibatch's candidates (:meth:`DagClassifierNet.forward`); there is
no per-sample Python loop in training, scoring or the metrics.

- ``bce``: binary cross-entropy on the labels, ``pos_weight = negatives / positives``
  of the training set (the paper's choice).
- ``rank``: a pairwise logistic loss within each query, ``softplus(s_j − s_i)`` over the
  pairs with ``label_i > label_j`` (or, ``rank_on="reward"``, ``reward_i > reward_j``).

Validation is per query, as in the paper: the mean over queries (with a positive and a
negative) of the ROC-AUC of the scores, and the top-1 hit rate (over queries with a
positive: the best-scored candidate is positive).  Training stops after ``patience``
epochs without a better validation AUC, and the best epoch's weights are kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.graphdata import CandidateSet, QueryGroups

__all__ = [
    "DagTrainConfig",
    "DagTrainReport",
    "LossKind",
    "bce_loss",
    "per_query_metrics",
    "rank_loss",
    "score_set",
    "train_classifier",
]

LossKind = Literal["bce", "rank"]


@dataclass(frozen=True)
class DagTrainConfig:
    """Hyper-parameters of one training run."""

    loss: LossKind = "bce"
    rank_on: Literal["label", "reward"] = "label"
    lr: float = 3e-3
    weight_decay: float = 1e-5
    epochs: int = 40
    batch_queries: int = 32
    patience: int = 6
    grad_clip: float = 1.0
    seed: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class DagTrainReport:
    """What a run did: per-epoch history and the kept (best) epoch's validation metrics."""

    best_epoch: int = -1
    best: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    graphs_seen: int = 0
    train_seconds: float = 0.0

    @property
    def graphs_per_second(self) -> float:
        return self.graphs_seen / self.train_seconds if self.train_seconds else 0.0


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Positively weighted binary cross-entropy, mean over candidates."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=torch.tensor(pos_weight)
    )


def rank_loss(logits: torch.Tensor, target: torch.Tensor, groups: QueryGroups) -> torch.Tensor:
    """Mean ``softplus(s_j − s_i)`` over pairs of one query with ``target_i > target_j``
    (zero, with a gradient path, when no query has such a pair)."""
    s = groups.dense(logits, fill=0.0)  # [Q, W]
    t = groups.dense(target, fill=float("nan"))
    better = t[:, :, None] > t[:, None, :]  # NaN compares False: padding never pairs
    diff = s[:, None, :] - s[:, :, None]  # [Q, i, j] = s_j - s_i
    pairs = better.sum()
    if int(pairs) == 0:
        return logits.sum() * 0.0
    return nn_softplus(diff)[better].sum() / pairs


def nn_softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x)


def per_query_metrics(
    scores: torch.Tensor, labels: torch.Tensor, query_index: torch.Tensor, n_queries: int
) -> dict[str, float]:
    """Mean per-query ROC-AUC and top-1 hit rate (see the module docstring), vectorised."""
    groups = QueryGroups.of(query_index, n_queries)
    s = groups.dense(scores.float(), fill=float("-inf"))
    y = groups.dense(labels.float(), fill=float("nan"))
    pos = y == 1
    neg = y == 0
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    gt = (s[:, :, None] > s[:, None, :]).float() + 0.5 * (s[:, :, None] == s[:, None, :]).float()
    pair = pos[:, :, None] & neg[:, None, :]
    wins = (gt * pair).sum(dim=(1, 2))
    both = (n_pos > 0) & (n_neg > 0)
    auc = wins[both] / (n_pos[both] * n_neg[both]).float()
    top = s.argmax(dim=1)
    hit = pos.gather(1, top[:, None]).squeeze(1)
    has_pos = n_pos > 0
    base = n_pos[has_pos].float() / (n_pos + n_neg)[has_pos].float()
    return {
        "auc": float(auc.mean()) if len(auc) else math.nan,
        "top1": float(hit[has_pos].float().mean()) if has_pos.any() else math.nan,
        "top1_random": float(base.mean()) if has_pos.any() else math.nan,
        "queries_auc": float(both.sum()),
    }


def score_set(net: DagClassifierNet, data: CandidateSet, chunk: int = 4096) -> torch.Tensor:
    """Logits of every candidate of ``data`` (eval mode, no gradients), in chunks."""
    was_training = net.training
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, data.n_candidates, chunk):
            sl = slice(start, start + chunk)
            out.append(net(data.query, data.actions, data.adjacency[sl], data.query_index[sl]))
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def train_classifier(
    net: DagClassifierNet,
    train: CandidateSet,
    val: CandidateSet,
    config: DagTrainConfig | None = None,
) -> DagTrainReport:
    """Train ``net`` in place; it ends with the best validation epoch's weights."""
    cfg = config or DagTrainConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_pos = float(train.label.sum())
    pos_weight = (train.n_candidates - n_pos) / n_pos if n_pos else 1.0
    target = train.label if cfg.rank_on == "label" else train.reward
    order = torch.argsort(train.query_index, stable=True)
    counts = torch.bincount(train.query_index, minlength=len(train))
    starts = torch.cumsum(counts, 0) - counts
    report = DagTrainReport()
    best_state = copy.deepcopy(net.state_dict())
    best_auc, stale = -math.inf, 0
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        perm = torch.randperm(len(train), generator=gen)
        total, steps = 0.0, 0
        for b in range(0, len(train), cfg.batch_queries):
            qs = perm[b : b + cfg.batch_queries]
            cand = _candidates_of(qs, order, counts, starts)
            local = torch.full((len(train),), -1, dtype=torch.long)
            local[qs] = torch.arange(len(qs))
            qi = local[train.query_index[cand]]
            logits = net(train.query[qs], train.actions[qs], train.adjacency[cand], qi)
            if cfg.loss == "bce":
                loss = bce_loss(logits, train.label[cand], pos_weight)
            else:
                loss = rank_loss(logits, target[cand], QueryGroups.of(qi, len(qs)))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach())
            steps += 1
            report.graphs_seen += len(cand)
        metrics = per_query_metrics(score_set(net, val), val.label, val.query_index, len(val))
        metrics.update(epoch=float(epoch), loss=total / max(1, steps))
        report.history.append(metrics)
        auc = metrics["auc"] if not math.isnan(metrics["auc"]) else -math.inf
        # the first epoch is kept at least: with no validation query that has both a good and
        # a bad candidate, every AUC is undefined, and the report still names an epoch
        if auc > best_auc or report.best_epoch < 0:
            best_auc, stale = auc, 0
            best_state = copy.deepcopy(net.state_dict())
            report.best_epoch, report.best = epoch, dict(metrics)
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    report.train_seconds = time.perf_counter() - started
    net.load_state_dict(best_state)
    net.eval()
    return report


def _candidates_of(
    qs: torch.Tensor, order: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor
) -> torch.Tensor:
    """Indices of all candidates of queries ``qs`` (candidates sorted by query in ``order``)."""
    c = counts[qs]
    offsets = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
    return order[torch.repeat_interleave(starts[qs], c) + offsets]
