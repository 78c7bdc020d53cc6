"""The per-edge REINFORCE baseline: forward edges among the nodes that run, and rewards move
the right logits."""

from __future__ import annotations

import numpy as np

from hieramas.learner.dags import is_acyclic
from hieramas.learner.edgereinforce import EdgeReinforce


def test_samples_are_dags_over_the_active_nodes_and_rewarded_edges_grow() -> None:
    learner = EdgeReinforce(4, lr=0.5, seed=0)
    active = np.array([True, True, False, True])
    samples = learner.sample(active, 200)
    assert all(is_acyclic(a) for a in samples)
    assert not samples[:, 2, :].any() and not samples[:, :, 2].any()
    assert 0.4 < samples[:, 0, 1].mean() < 0.6  # σ(0) = 0.5 before training
    for _ in range(60):  # the reward is 1 with the edge 0 → 3 and 0 without it
        adj = learner.sample(active, 5)
        learner.update(adj, adj[:, 0, 3].astype(float), active)
    p = learner.probs()
    assert p[0, 3] > 0.9 and learner.updates == 60
    assert abs(p[0, 1] - 0.5) < 0.3  # unrewarded edges drift only by chance
    assert p[0, 2] == 0.5 and p[3, 0] == 0.0  # a node that never ran; a backward edge
    assert learner.greedy(active)[0, 3] and not learner.greedy(active)[:, 2].any()
    before = learner.theta.copy()
    learner.update(adj, [1.0] * 5, active)  # equal rewards: no advantage, no change
    assert np.allclose(learner.theta, before)
