"""The query embedding rides with a sampled query's trace: packed compactly, checked when
read, and used by the trainer only when its own embedder made it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from learner_support import simulate, toy_config

from hieramas.controller.planner import PlanRequest
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.episode import Episode
from hieramas.learner.planning import PolicyPlanner, pack_embedding, unpack_embedding
from hieramas.learner.policy import Policy
from hieramas.learner.reinforce import TrainConfig, Trainer

NODES = {"x": ("Solver", 2), "y": ("Critic", 2)}
LLMS = {"cheap": 0.05, "big": 2.0}


class Counting:
    """An embedder that counts the texts it embeds."""

    def __init__(self, inner: HashEmbedder) -> None:
        self.inner = inner
        self.texts = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_a_packed_embedding_round_trips_and_a_bad_one_is_refused() -> None:
    vector = HashEmbedder(32).embed(["what is 2+2?"])[0].numpy()
    packed = pack_embedding(vector)
    assert packed is not None and len(packed) == 64  # float16
    back = unpack_embedding(packed, 32)
    assert back is not None and np.abs(back - vector).max() < 1e-3
    assert unpack_embedding(packed, 16) is None  # another size
    assert unpack_embedding(packed[:-2], 32) is None
    assert unpack_embedding(pack_embedding(vector * 3), 32) is None  # not normalised
    assert unpack_embedding(pack_embedding(np.full(32, np.nan, np.float32)), 32) is None
    assert unpack_embedding(None, 32) is None


def _episodes(planner: PolicyPlanner, n: int) -> list[Episode]:
    rng = np.random.default_rng(0)
    config = toy_config(NODES, LLMS)
    out = []
    for i in range(n):
        text = f"question {i}"
        assigned = planner.assign(config, PlanRequest(text, explore=True))
        episode = simulate(
            planner.plan(text, explore=True),
            text=text,
            roles={n: r for n, (r, _) in NODES.items()},
            node_sim=lambda node, a, rng: (bool(rng.random() < 0.6), 1e-4),
            final_rule=lambda ns: ns["x"].correct is True,
            rng=rng,
            temperature=planner.temperature,
        )
        out.append(
            dataclasses.replace(
                episode, query_embedding=assigned.query_embedding, embedder=assigned.embedder
            )
        )
    return out


def test_the_trainer_uses_a_carried_embedding_of_its_own_embedder_and_embeds_the_rest() -> None:
    config = toy_config(NODES, LLMS)
    embedder = Counting(HashEmbedder(16))
    policy = Policy.create(config, embedder, seed=3)
    planner = PolicyPlanner(policy.snapshot(), HashEmbedder(16), temperature=2.0, seed=0)
    assert planner.assign(config, PlanRequest("q")).query_embedding is None  # greedy: none
    episodes = _episodes(planner, 8)
    assert all(e.embedder == "hash-16" and len(e.query_embedding or b"") == 32 for e in episodes)
    foreign = [dataclasses.replace(e, embedder="another-model") for e in episodes[:3]]
    batch = [*episodes[3:], *foreign]
    embedder.texts = 0

    with_carried = Trainer(policy, embedder, TrainConfig())
    stats = with_carried.update(batch)
    assert (with_carried.carried, with_carried.embedded, embedder.texts) == (5, 3, 3)

    # the same update from texts alone gives (up to float16 rounding) the same loss
    again = Policy.create(config, embedder, seed=3)
    plain = Trainer(again, embedder, TrainConfig())
    texts_only = [dataclasses.replace(e, query_embedding=None) for e in batch]
    reference = plain.update(texts_only)
    assert plain.embedded == 8 and plain.carried == 0
    assert abs(stats.loss - reference.loss) < 1e-2
    # and an episode round-trips through the learner's saved state with its embedding
    assert Episode.from_json(episodes[0].to_json()) == episodes[0]
