"""Checkpoints: bytes that rebuild the same policy, with lineage, or a typed error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from learner_support import toy_config

from hieramas.learner.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointMeta,
    decode_checkpoint,
    encode_checkpoint,
)
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.planning import PolicyPlanner
from hieramas.learner.policy import Policy
from hieramas.learner.reinforce import TrainConfig, Trainer

LLMS = {"cheap": 0.05, "mid": 0.5, "big": 2.0}
NODES = {"x": ("Solver", 2), "y": ("Critic", 2)}
DIM = 384  # the MiniLM size, for a realistic blob size


def _setup() -> tuple[Policy, Trainer, CheckpointMeta]:
    config = toy_config(NODES, LLMS)
    embedder = HashEmbedder(DIM)
    policy = Policy.create(config, embedder, seed=5)
    trainer = Trainer(policy, embedder, TrainConfig())
    planner = PolicyPlanner(policy, embedder, temperature=trainer.temperature, seed=0)
    episodes = []
    for i in range(6):
        plan = planner.plan(f"q{i}", explore=True)
        episodes.append(
            Episode(
                query_id=f"q{i}",
                item_id=None,
                domain="toy",
                config_name="toy",
                config_version=2,
                policy_version=0,
                query_text=f"q{i}",
                assignment=plan.assignment,
                nodes={
                    n: NodeOutcome(n, r, True, "A", i % 2 == 0, 1e-4) for n, (r, _) in NODES.items()
                },
                final_correct=i % 3 == 0,
                total_cost_usd=3e-4,
                explore=True,
                temperature=planner.temperature,
                slot_log_probs=plan.decision.slot_log_probs,
            )
        )
    trainer.update(episodes)
    meta = CheckpointMeta(
        version=4,
        parent=3,
        config_name=config.name,
        config_version=2,
        layout=policy.layout.to_json(),
        embedder=embedder.name,
        dim=DIM,
        hidden=policy.net.hidden,
        seed=5,
        temperature=trainer.temperature,
        hyper=trainer.config.to_json(),
        metrics={"val_accuracy": 0.75, "mean_cost_usd": 0.0012},
    )
    return policy, trainer, meta


def test_a_checkpoint_rebuilds_the_same_policy_and_keeps_its_metadata() -> None:
    policy, _, meta = _setup()
    blob = encode_checkpoint(policy, meta)
    ckpt = decode_checkpoint(blob)
    assert ckpt.meta == dataclasses.replace(meta, created_unix=ckpt.meta.created_unix)
    assert ckpt.meta.created_unix > 0
    assert ckpt.meta.llms == ["skip", "vote", "pass", *LLMS]
    assert ckpt.meta.roles == ["Solver", "Critic"]
    assert ckpt.trainer_state is None
    loaded = ckpt.policy(config=toy_config(NODES, LLMS), embedder=f"hash-{DIM}")
    query = torch.randn(3, DIM)
    assert torch.equal(loaded.net(query), policy.net(query))
    assert len(blob) < 400_000  # fits a JetStream KV value (1 MiB by default)


def test_trainer_state_resumes_training_exactly() -> None:
    policy, trainer, meta = _setup()
    ckpt = decode_checkpoint(encode_checkpoint(policy, meta, trainer=trainer))
    resumed = ckpt.policy()
    again = Trainer(resumed, trainer.embedder, trainer.config)
    ckpt.restore_trainer(again)
    assert again.step == trainer.step
    np.testing.assert_array_equal(again.baseline, trainer.baseline)
    # the same next update from both: Adam moments and step count came back
    planner = PolicyPlanner(policy, trainer.embedder, temperature=trainer.temperature, seed=1)
    plan = planner.plan("next", explore=True)
    ep = Episode(
        query_id="n", item_id=None, domain="toy", config_name="toy", config_version=2,
        policy_version=4, query_text="next", assignment=plan.assignment,
        nodes={n: NodeOutcome(n, r, True, "A", True, 1e-4) for n, (r, _) in NODES.items()},
        final_correct=True, total_cost_usd=2e-4, explore=True,
        temperature=planner.temperature, slot_log_probs=plan.decision.slot_log_probs,
    )  # fmt: skip
    trainer.update([ep, ep])
    again.update([ep, ep])
    for a, b in zip(policy.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_corrupt_foreign_and_incompatible_blobs_raise_typed_errors() -> None:
    policy, _, meta = _setup()
    blob = encode_checkpoint(policy, meta)
    for bad in (b"", b"garbage" * 10, blob[: len(blob) // 2], b"\xff" * 8 + blob[8:]):
        with pytest.raises(CheckpointError) as err:
            decode_checkpoint(bad)
        assert err.value.code == "corrupt"
    ckpt = decode_checkpoint(blob)
    future = Checkpoint(dataclasses.replace(ckpt.meta, format=99), ckpt.policy_state)
    with pytest.raises(CheckpointError) as err:
        decode_checkpoint(encode_checkpoint(policy, future.meta))
    assert err.value.code == "format"
    with pytest.raises(CheckpointError) as err:
        ckpt.policy(config=toy_config(NODES, {**LLMS, "new": 1.0}))
    assert err.value.code == "incompatible"
    with pytest.raises(CheckpointError) as err:
        ckpt.policy(config=toy_config({"x": ("Solver", 3), "y": ("Critic", 2)}, LLMS))
    assert err.value.code == "incompatible"
    with pytest.raises(CheckpointError) as err:
        ckpt.policy(embedder="all-MiniLM-L6-v2")
    assert err.value.code == "incompatible"
    with pytest.raises(CheckpointError) as err:
        ckpt.restore_trainer(Trainer(policy, HashEmbedder(DIM)))
    assert err.value.code == "format"
    truncated = Checkpoint(ckpt.meta, {k: v for k, v in list(ckpt.policy_state.items())[1:]})
    with pytest.raises(CheckpointError) as err:
        truncated.policy()
    assert err.value.code == "corrupt"
