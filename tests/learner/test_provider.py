"""The controller's policy provider: each version samples from a stream of its own."""

from __future__ import annotations

import dataclasses

from learner_support import toy_config

from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.provider import NatsPolicyProvider

LLMS = {"cheap": 0.05, "mid": 0.5, "big": 2.0}
NODES = {"x": ("Solver", 2), "y": ("Critic", 2)}


def _blobs(versions: list[int]) -> list[bytes]:
    """The same (uniform) policy published as each of ``versions``."""
    config = toy_config(NODES, LLMS)
    embedder = HashEmbedder(16)
    policy = Policy.create(config, embedder, seed=1)
    meta = CheckpointMeta(
        version=0, parent=None, config_name=config.name, config_version=1,
        layout=policy.layout.to_json(), embedder=embedder.name, dim=16,
        hidden=policy.net.hidden, seed=1, temperature=5.0,
    )  # fmt: skip
    return [
        encode_checkpoint(policy, dataclasses.replace(meta, version=v, parent=v - 1 or None))
        for v in versions
    ]


def _draws(provider: NatsPolicyProvider, blob: bytes, n: int = 30) -> list[tuple[int, ...]]:
    planner = provider.build(blob).planner
    return [planner.plan(f"query {i}", explore=True).decision.actions for i in range(n)]


def test_a_new_version_does_not_replay_the_previous_versions_draws() -> None:
    v1, v2 = _blobs([1, 2])
    seeded = NatsPolicyProvider(seed=7)
    first, second = _draws(seeded, v1), _draws(seeded, v2)
    # same weights, same queries, same seed: only the version differs
    assert first != second
    assert sum(a == b for a, b in zip(first, second, strict=True)) < 10
    # and a version's draws are reproducible from the seed
    assert _draws(NatsPolicyProvider(seed=7), v1) == first
    assert _draws(NatsPolicyProvider(seed=8), v1) != first
