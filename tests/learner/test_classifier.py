"""The Stage-2 classifier: messages along the edges, labels it must learn from the graph and
the query, both losses, per-query metrics, checkpoints, and batched scoring for planning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hieramas.controller.config import HieraConfig, parse_config
from hieramas.learner.checkpoint import CheckpointError, CheckpointMeta, encode_checkpoint
from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.dagcheckpoint import (
    ClassifierMeta,
    decode_classifier,
    encode_classifier,
)
from hieramas.learner.dagplanning import TopologyChooser
from hieramas.learner.dags import generate_dags, longest_path
from hieramas.learner.dagtrain import (
    DagTrainConfig,
    per_query_metrics,
    rank_loss,
    score_set,
    train_classifier,
)
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.graphdata import (
    CandidateSet,
    QueryGroups,
    dag_batch,
    label_top_k,
    node_actions,
)
from hieramas.learner.policy import Policy
from hieramas.learner.slots import SlotLayout
from support import config_yaml, node

ROLES = ["Critic", "Doctor", "Lawyer", "Historian", "Economist", "Mathematician"]
NAMES = [f"n{i}" for i in range(6)]
LLMS = ("fixed:A", "fixed:B", "fixed:C")


def _config(names: list[str] = NAMES) -> HieraConfig:
    nodes = {n: node(ROLES[i], ["fixed:A", "fixed:B"], "fixed:C") for i, n in enumerate(names)}
    return parse_config(config_yaml("http://127.0.0.1:9/v1", nodes, []))


def _net(config: HieraConfig, **kw: object) -> DagClassifierNet:
    return DagClassifierNet.create(config, HashEmbedder(32), hidden=32, **kw)  # type: ignore[arg-type]


def _random_actions(layout: SlotLayout, q: int, rng: np.random.Generator) -> np.ndarray:
    llm = [layout.action_index(x) for x in LLMS]
    return np.stack(
        [
            node_actions(layout, [int(rng.choice(llm)) for _ in layout.slots]).numpy()
            for _ in range(q)
        ]
    )


def _queries(types: np.ndarray) -> np.ndarray:
    emb = HashEmbedder(32)
    own = emb.embed([f"query {i}" for i in range(len(types))])
    kind = emb.embed([f"type {t}" for t in types])
    return (0.3 * own + kind).numpy()


# -- mechanics ------------------------------------------------------------------------


def test_messages_flow_along_the_edges_and_batches_keep_graphs_apart() -> None:
    adj = torch.zeros(2, 3, 3, dtype=torch.bool)
    adj[0, 0, 1] = True  # graph 0: 0 -> 1
    adj[1, 2, 0] = True  # graph 1: 2 -> 0
    batch = dag_batch(adj)
    assert batch.edge_index.tolist() == [[0, 5], [1, 3]]  # rows g*n + i, source first
    assert batch.batch.tolist() == [0, 0, 0, 1, 1, 1] and batch.num_graphs == 2
    for kind in ("gatv2", "graph"):
        net = _net(_config(), conv=kind).eval()
        conv = net.convs[0]
        x = torch.randn(6, 32)
        base = conv(x, batch.edge_index)
        bumped = x.clone()
        bumped[0] += 1.0  # node 0 of graph 0, the edge's source
        changed = (conv(bumped, batch.edge_index) - base).abs().sum(dim=1) > 1e-6
        assert changed[1] and not changed[2] and not changed[3:].any(), kind
        bumped = x.clone()
        bumped[1] += 1.0  # the edge's target: its change reaches nobody else
        changed = (conv(bumped, batch.edge_index) - base).abs().sum(dim=1) > 1e-6
        assert not changed[0] and not changed[2:].any(), kind


def test_node_actions_and_labels() -> None:
    config = _config()
    layout = SlotLayout.from_config(config)
    acts = node_actions(layout, list(range(len(layout.slots))))
    assert acts.shape == (6, 3)
    assert acts[0].tolist() == [0, 1, 2] and acts[5].tolist() == [15, 16, 17]  # synth first
    rewards = torch.tensor([0.5, 0.9, -1.0, 0.7, 0.0, -0.2, -0.3])
    qi = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    # top 2 of query 0 are 0.9 and 0.7; query 1 has no reward > 0: no positive
    assert label_top_k(rewards, qi, top_k=2).tolist() == [0, 1, 0, 1, 0, 0, 0]
    # equal rewards (a cost-aware reward at its floor): the cheaper win, then position
    tied = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5])
    cost = torch.tensor([0.4, 0.2, 0.1, 0.2, 0.9, 0.1, 0.1])
    assert label_top_k(tied, qi, top_k=2).tolist() == [1, 1, 0, 0, 1, 1, 0]
    assert label_top_k(tied, qi, top_k=2, cost=cost).tolist() == [0, 1, 1, 0, 1, 1, 0]
    groups = QueryGroups.of(torch.tensor([1, 0, 1, 1]))
    assert groups.dense(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [[2, 0, 0], [1, 3, 4]]


def test_a_candidate_set_splits_by_query_and_keeps_candidates_with_their_query() -> None:
    adj = torch.from_numpy(generate_dags(4, 12, seed=0))
    qi = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 0])
    data = CandidateSet(
        query=torch.arange(4.0)[:, None].expand(4, 8).contiguous(),
        actions=torch.zeros(4, 4, 3, dtype=torch.long),
        adjacency=adj, query_index=qi, reward=qi.float(), label=torch.zeros(12),
    )  # fmt: skip
    train, val = data.split(0.25, seed=1)
    assert len(train) == 3 and len(val) == 1 and train.n_candidates + val.n_candidates == 12
    for part in (train, val):  # a candidate's reward is its original query id here
        assert torch.equal(part.query[part.query_index, 0], part.reward)
    picked = data.subset([3, 1])
    assert picked.query[:, 0].tolist() == [3.0, 1.0] and picked.n_candidates == 7
    with pytest.raises(ValueError):
        CandidateSet(data.query, data.actions, adj, qi + 4, data.reward, data.label)


def test_per_query_metrics_and_rank_loss_on_known_values() -> None:
    scores = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.3])
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    qi = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    m = per_query_metrics(scores, labels, qi, 3)
    assert m["auc"] == pytest.approx(1.0) and m["top1"] == pytest.approx(1.0)
    assert m["queries_auc"] == 2  # query 2 has no positive: no AUC, no top-1
    flipped = per_query_metrics(-scores, labels, qi, 3)
    assert flipped["auc"] == pytest.approx(0.0) and flipped["top1"] == pytest.approx(0.0)
    groups = QueryGroups.of(qi, 3)
    good = rank_loss(torch.tensor([5.0, -5, -5, -5, 5, 0, 0]), labels, groups)
    bad = rank_loss(torch.tensor([-5.0, 5, 5, 5, -5, 0, 0]), labels, groups)
    assert float(good) < 0.01 < 4.9 < float(bad)
    assert float(rank_loss(scores, torch.zeros(7), groups)) == 0.0  # no pair to order


# -- learning known functions of the graph -----------------------------------------------


def _fit(data: CandidateSet, config: HieraConfig, **train: object) -> dict[str, float]:
    tr, va = data.split(0.25, seed=0)
    net = _net(config)
    cfg = DagTrainConfig(**{"epochs": 25, "patience": 8, **train})  # type: ignore[arg-type]
    report = train_classifier(net, tr, va, cfg)
    assert report.graphs_seen > 0 and report.history
    return report.best


def test_a_validation_set_without_an_auc_still_keeps_an_epoch() -> None:
    """Every validation query's candidates share one label (as in a tiny demo run): the AUC
    is undefined on every epoch, and the first epoch is the one kept and reported."""
    config = _config()
    layout = SlotLayout.from_config(config)
    rng = np.random.default_rng(3)
    q, per = 40, 4
    adj = generate_dags(6, q * per, seed=3)
    label = np.repeat(np.arange(q) % 2, per).astype(float)  # all good or all bad per query
    data = CandidateSet.from_numpy(
        _queries(np.zeros(q, dtype=int)), _random_actions(layout, q, rng), adj,
        np.repeat(np.arange(q), per), label, label,
    )  # fmt: skip
    tr, va = data.split(0.25, seed=0)
    report = train_classifier(_net(config), tr, va, DagTrainConfig(epochs=3, patience=1))
    assert report.best_epoch == 0 and math.isnan(report.best["auc"]), report.best
    assert "top1" in report.best


def test_it_learns_which_way_an_edge_points() -> None:
    # every candidate joins n0 and n1 one way or the other; positive: n0 -> n1
    config = _config()
    layout = SlotLayout.from_config(config)
    rng = np.random.default_rng(0)
    q, per = 160, 6
    adj = generate_dags(6, 6 * q * per, seed=1)
    adj = adj[adj[:, 0, 1] | adj[:, 1, 0]][: q * per]
    data = CandidateSet.from_numpy(
        _queries(np.zeros(q, dtype=int)), _random_actions(layout, q, rng), adj,
        np.repeat(np.arange(q), per), adj[:, 0, 1].astype(float), adj[:, 0, 1].astype(float),
    )  # fmt: skip
    best = _fit(data, config)
    assert best["auc"] > 0.95 and best["top1"] > 0.9, best


def test_it_learns_a_label_that_depends_on_the_query_and_the_depth() -> None:
    # queries of type 0 want deep DAGs (longest path >= 3), type 1 shallow ones
    config = _config()
    layout = SlotLayout.from_config(config)
    rng = np.random.default_rng(1)
    q, per = 200, 6
    types = rng.integers(0, 2, q)
    adj = generate_dags(6, q * per, seed=2)
    label = ((longest_path(adj) >= 3) ^ (np.repeat(types, per) == 1)).astype(float)
    data = CandidateSet.from_numpy(
        _queries(types), _random_actions(layout, q, rng), adj,
        np.repeat(np.arange(q), per), label, label,
    )  # fmt: skip
    best = _fit(data, config, epochs=30)
    assert best["auc"] > 0.85 and best["top1"] > best["top1_random"] + 0.2, best


def test_the_ranking_loss_orders_candidates_by_reward_within_a_query() -> None:
    # reward: fewer edges is better, plus noise; labels are the paper's top-2 with reward > 0
    config = _config()
    layout = SlotLayout.from_config(config)
    rng = np.random.default_rng(2)
    q, per = 160, 6
    adj = generate_dags(6, q * per, seed=3, d_min=0.3, d_max=0.9)
    reward = 1.0 - adj.sum(axis=(1, 2)) / 15 + rng.normal(0, 0.01, q * per)
    data = CandidateSet.from_numpy(
        _queries(np.zeros(q, dtype=int)), _random_actions(layout, q, rng), adj,
        np.repeat(np.arange(q), per), reward,
    )  # fmt: skip
    assert 0 < float(data.label.mean()) < 0.5
    best = _fit(data, config, loss="rank", rank_on="reward")
    assert best["auc"] > 0.85 and best["top1"] > best["top1_random"] + 0.2, best


# -- checkpoints and planning -----------------------------------------------------------


def _meta(net: DagClassifierNet, config: HieraConfig, **kw: object) -> ClassifierMeta:
    return ClassifierMeta(
        version=3, parent=2, config_name=config.name, config_version=1,
        layout=net.layout.to_json(), embedder="hash-32", dim=net.dim, seed=7,
        net=net.hyper(), train=DagTrainConfig().to_json(), metrics={"auc": 0.8}, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_checkpoint_round_trips_and_refuses_what_does_not_fit() -> None:
    config = _config()
    net = _net(config, conv="graph", layers=3).eval()
    blob = encode_classifier(net, _meta(net, config, policy_version=5))
    ckpt = decode_classifier(blob)
    assert (ckpt.meta.version, ckpt.meta.parent, ckpt.meta.seed) == (3, 2, 7)
    assert ckpt.meta.policy_version == 5 and ckpt.meta.metrics == {"auc": 0.8}
    assert ckpt.meta.train["loss"] == "bce" and ckpt.meta.created_unix > 0
    again = ckpt.net(config=config, embedder="hash-32")
    layout = net.layout
    acts = node_actions(layout, [layout.action_index("fixed:A")] * len(layout.slots))
    q = torch.randn(32)
    adj = torch.from_numpy(generate_dags(6, 20, seed=0))
    with torch.inference_mode():
        assert torch.equal(net.score_query(q, acts, adj), again.score_query(q, acts, adj))
    with pytest.raises(CheckpointError, match="incompatible"):
        ckpt.net(config=_config(NAMES[:5]))
    with pytest.raises(CheckpointError, match="incompatible"):
        ckpt.net(embedder="minilm")
    with pytest.raises(CheckpointError, match="corrupt"):
        decode_classifier(blob[:100])
    policy = Policy.create(config, HashEmbedder(32))
    stage1 = encode_checkpoint(
        policy,
        CheckpointMeta(
            version=1, parent=None, config_name="t", config_version=1,
            layout=policy.layout.to_json(), embedder="hash-32", dim=32, hidden=64, seed=0,
        ),
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="format"):
        decode_classifier(stage1)  # a Stage-1 policy is not a classifier
    with pytest.raises(ValueError):
        encode_classifier(net, _meta(_net(config), config))  # hyper-parameters differ


def test_scoring_a_query_in_one_batch_matches_training_scores_and_ignores_dropped_nodes() -> None:
    config = _config()
    layout = SlotLayout.from_config(config)
    net = _net(config).eval()
    rng = np.random.default_rng(0)
    acts = _random_actions(layout, 1, rng)
    adj = generate_dags(6, 50, seed=4)
    data = CandidateSet.from_numpy(
        _queries(np.zeros(1, dtype=int)), acts, adj, np.zeros(50), np.zeros(50)
    )
    batched = score_set(net, data)
    one = net.score_numpy(data.query[0], data.actions[0], adj)
    assert np.allclose(batched.numpy(), one, atol=1e-5)
    # drop n2 (synthesizer skip): its edges no longer run, so they do not change the score
    dropped = data.actions[0].clone()
    dropped[2, 0] = layout.action_index("skip")
    cut = adj.copy()
    cut[:, 2, :] = False
    cut[:, :, 2] = False
    assert np.allclose(net.score_numpy(data.query[0], dropped, adj),
                       net.score_numpy(data.query[0], dropped, cut), atol=1e-6)  # fmt: skip

    chooser = TopologyChooser(net, candidates=200, top_k=3)
    flat = [layout.action_index("fixed:A")] * len(layout.slots)
    choice = chooser.choose(data.query[0], flat, seed=9)
    assert len(choice.candidates) == 200 and len(choice.ranked) == 3
    assert choice.scores[choice.best] == choice.scores.max()
    assert list(choice.scores[list(choice.ranked)]) == sorted(choice.scores, reverse=True)[:3]
    assert choice.edges == choice.candidates.edges(choice.best)
    again = chooser.choose(data.query[0], flat, seed=9)
    assert again.edges == choice.edges and not math.isnan(float(choice.scores.sum()))
