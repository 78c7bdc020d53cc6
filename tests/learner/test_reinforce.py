"""REINFORCE: it learns a bandit, credits slots per supernode, and trains on-policy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch
from learner_support import NodeSim, simulate, toy_config

from hieramas.learner.embeddings import CachedEmbedder, HashEmbedder
from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.hyper import AdvantageScale
from hieramas.learner.planning import PolicyPlanner
from hieramas.learner.policy import Policy
from hieramas.learner.reinforce import (
    TrainConfig,
    Trainer,
    cosine_temperature,
    leave_one_out_baseline,
)
from hieramas.learner.rewards import RewardConfig
from hieramas.learner.slots import SlotAssignment, SlotLayout, SlotOptions

NO_EXTRAS = SlotOptions(synthesizer_skip=False, pseudo_synthesizers=False, proposer_skip=False)


def _train(
    nodes: Mapping[str, tuple[str, int]],
    llms: Mapping[str, float],
    node_sim: NodeSim,
    *,
    updates: int,
    reward: RewardConfig,
    seed: int = 0,
    batch: int = 16,
    texts: tuple[str, ...] = ("q",),
    slot_actions: bool = False,
    advantage_scale: AdvantageScale = "batch",
) -> tuple[PolicyPlanner, list[float]]:
    config = toy_config(nodes, llms)
    layout = SlotLayout.from_config(config, answerless=set(), options=NO_EXTRAS)
    embedder = CachedEmbedder(HashEmbedder(16))
    policy = Policy.create(config, embedder, layout=layout, seed=seed, slot_actions=slot_actions)
    trainer = Trainer(
        policy,
        embedder,
        TrainConfig(
            lr=0.01,
            t0=2.0,
            t1=0.8,
            schedule_updates=updates,
            reward=reward,
            advantage_scale=advantage_scale,
        ),
    )
    roles = {n: role for n, (role, _) in nodes.items()}
    rng = np.random.default_rng(seed)
    rewards = []
    for _ in range(updates):
        planner = PolicyPlanner(
            policy, embedder, temperature=trainer.temperature, seed=int(rng.integers(1 << 30))
        )
        episodes = []
        for _ in range(batch):
            text = texts[int(rng.integers(len(texts)))]
            episodes.append(
                simulate(
                    planner.plan(text, explore=True),
                    text=text,
                    roles=roles,
                    node_sim=node_sim,
                    final_rule=lambda ns: sum(n.correct is True for n in ns.values()) > len(ns) / 2,
                    rng=rng,
                    temperature=trainer.temperature,
                )
            )
        stats = trainer.update(episodes)
        assert stats.used == batch
        rewards.append(stats.mean_reward)
    return PolicyPlanner(policy, embedder), rewards


@pytest.mark.parametrize("advantage_scale", ["batch", "running"])
def test_a_three_slot_bandit_learns_its_best_arm(advantage_scale: AdvantageScale) -> None:
    best = "l2"

    def node_sim(node: str, a: SlotAssignment, rng: np.random.Generator) -> tuple[bool, float]:
        return bool(rng.random() < (0.9 if a.synthesizers[node] == best else 0.2)), 0.0

    planner, rewards = _train(
        {"x": ("Solver", 2)},
        {"l0": 1.0, "l1": 1.0, "l2": 1.0, "l3": 1.0},
        node_sim,
        updates=25,
        reward=RewardConfig(),
        advantage_scale=advantage_scale,
    )
    plan = planner.plan("q")
    assert plan.assignment.synthesizers["x"] == best
    # and the policy puts most of its mass there at T = 1 (slot 0 is x's synthesizer)
    assert np.exp(plan.decision.slot_log_probs[0]) > 0.8
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.5


def _trap(mode: str, seed: int) -> SlotAssignment:
    """Three supernodes; ``c`` is the only one where the cheap model W is weak.

    a and b answer right with either model, so the majority (the final answer) is
    right whatever c says: final-only rewards see only W's lower price.
    """
    acc = {"a": {"S": 0.99, "W": 0.99}, "b": {"S": 0.99, "W": 0.99}, "c": {"S": 0.9, "W": 0.2}}
    cost = {"S": 0.001, "W": 0.00002}

    def node_sim(node: str, a: SlotAssignment, rng: np.random.Generator) -> tuple[bool, float]:
        llms = [a.synthesizers[node], *a.proposers[node]]
        p = float(np.mean([acc[node][m] for m in llms]))
        return bool(rng.random() < p), sum(cost[m] for m in llms)

    planner, _ = _train(
        {"a": ("Alpha", 1), "b": ("Beta", 1), "c": ("Gamma", 1)},
        {"S": 2.0, "W": 0.02},
        node_sim,
        updates=60,
        reward=RewardConfig(mode=mode, lam=100.0, lam_unsolved=100.0),  # type: ignore[arg-type]
        seed=seed,
    )
    return planner.plan("q").assignment


def test_multi_level_rewards_replace_a_weak_model_that_final_only_keeps() -> None:
    multi = _trap("multi", seed=1)
    final = _trap("final", seed=1)
    assert (multi.synthesizers["c"], *multi.proposers["c"]) == ("S", "S")
    assert (final.synthesizers["c"], *final.proposers["c"]) == ("W", "W")


def _episode(policy: Policy, planner: PolicyPlanner, text: str, correct: bool) -> Episode:
    plan = planner.plan(text, explore=True)
    nodes = {
        n: NodeOutcome(n, s.role, True, "A", correct, 0.0001)
        for n, s in zip(policy.layout.nodes, policy.layout.slots, strict=False)
    }
    return Episode(
        query_id=text,
        item_id="i",
        domain="toy",
        config_name="toy",
        config_version=1,
        policy_version=0,
        query_text=text,
        assignment=plan.assignment,
        nodes=nodes,
        final_correct=correct,
        total_cost_usd=0.0003,
        explore=True,
        temperature=planner.temperature,
        slot_log_probs=plan.decision.slot_log_probs,
    )


def test_on_policy_episodes_have_importance_ratio_one_and_unusable_ones_are_skipped() -> None:
    config = toy_config({"x": ("X", 2), "y": ("Y", 1)}, {"a": 0.1, "b": 1.0, "c": 3.0})
    embedder = HashEmbedder(16)
    policy = Policy.create(
        config, embedder, layout=SlotLayout.from_config(config, answerless=set())
    )
    with torch.no_grad():
        torch.nn.init.normal_(policy.net.score.weight, std=1.0)
    trainer = Trainer(policy, embedder, TrainConfig(t0=1.7, t1=1.7))
    planner = PolicyPlanner(policy, embedder, temperature=trainer.temperature, seed=3)
    batch = [_episode(policy, planner, f"q{i}", i % 2 == 0) for i in range(8)]
    ungraded = Episode(**{**_fields(batch[0]), "final_correct": None})
    greedy = Episode(**{**_fields(batch[1]), "explore": False})
    stats = trainer.update([*batch, ungraded, greedy])
    assert (stats.episodes, stats.used) == (10, 8)
    assert stats.mean_ratio == pytest.approx(1.0, abs=1e-5)
    # a second update on the same (now stale) episodes weighs them by the truncated ratio
    stats2 = trainer.update(batch)
    assert stats2.mean_ratio != pytest.approx(1.0, abs=1e-6)
    assert trainer.step == 2
    assert trainer.update([greedy]).used == 0


def _fields(e: Episode) -> dict[str, object]:
    return {f: getattr(e, f) for f in e.__slots__}  # type: ignore[attr-defined]


def test_cosine_temperature_runs_from_t0_to_t1_and_stays() -> None:
    assert cosine_temperature(0, 10.0, 0.8, 100) == pytest.approx(10.0)
    assert cosine_temperature(50, 10.0, 0.8, 100) == pytest.approx(5.4)
    assert cosine_temperature(100, 10.0, 0.8, 100) == pytest.approx(0.8)
    assert cosine_temperature(1000, 10.0, 0.8, 100) == pytest.approx(0.8)


def test_the_group_baseline_is_the_mean_of_the_same_items_other_episodes() -> None:
    rewards = np.array([[1.0, 0.0], [0.0, 0.5], [-1.0, 1.0], [0.25, 0.25], [0.5, 0.5]])
    fallback = np.array([9.0, 8.0])
    out = leave_one_out_baseline(rewards, ["a", "a", "a", "b", None], fallback)
    np.testing.assert_allclose(out[0], [-0.5, 0.75])  # mean of episodes 1 and 2
    np.testing.assert_allclose(out[1], [0.0, 0.5])
    np.testing.assert_allclose(out[2], [0.5, 0.25])
    # alone in its group, or no item: the moving average
    np.testing.assert_allclose(out[3], fallback)
    np.testing.assert_allclose(out[4], fallback)
    # an item every plan solves alike carries no advantage: its difficulty cancels
    same = np.array([[0.9, 0.9], [0.9, 0.9]])
    np.testing.assert_allclose(same - leave_one_out_baseline(same, ["x", "x"], fallback), 0.0)


def test_the_running_scale_keeps_a_cost_only_batch_small() -> None:
    """Under ``running``, a batch whose rewards differ only by cost is scaled by the
    spread seen so far (failures included), not blown up to unit size by its own."""
    config = toy_config({"x": ("Solver", 1)}, {"a": 1.0})
    embedder = HashEmbedder(8)
    policy = Policy.create(config, embedder, seed=0)
    trainer = Trainer(policy, embedder, TrainConfig(advantage_scale="running"))
    trainer._track_reward_scale(np.array([0.99, 0.99]))  # no spread yet: stays unset
    assert np.isnan(trainer.reward_scale)
    with_failure = np.array([0.99, 0.98, -1.0, 0.99])
    trainer._track_reward_scale(with_failure)
    assert trainer.reward_scale == pytest.approx(np.std(with_failure, ddof=1))
    cost_only = np.array([0.99, 0.98, 0.99, 0.97])
    before = trainer.reward_scale
    trainer._track_reward_scale(cost_only)
    assert trainer.reward_scale == pytest.approx(0.9 * before + 0.1 * np.std(cost_only, ddof=1))
    assert trainer.reward_scale > 20 * np.std(cost_only, ddof=1)  # the batch scale would be 1x
    state = trainer.state_dict()
    again = Trainer(policy, embedder, TrainConfig(advantage_scale="running"))
    again.load_state_dict(state)
    assert again.reward_scale == trainer.reward_scale
