"""The policy: shapes, decoders, and one distribution for sampling and training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from learner_support import toy_config

from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.planning import PolicyPlanner
from hieramas.learner.policy import Policy
from hieramas.learner.slots import SlotAssignment, SlotLayout, SlotOptions

LLMS = {"cheap": 0.05, "mid": 0.5, "big": 2.0, "huge": 8.0}
NODES = {"x": ("Solver", 3), "y": ("Critic", 2), "z": ("Checker", 1)}


def _policy(
    seed: int = 0, slot_actions: bool = False, kind_columns: bool = False, **opts: bool
) -> Policy:
    config = toy_config(NODES, LLMS)
    layout = SlotLayout.from_config(config, answerless=set(), options=SlotOptions(**opts))
    policy = Policy.create(
        config,
        HashEmbedder(16),
        layout=layout,
        seed=seed,
        slot_actions=slot_actions,
        kind_columns=kind_columns,
    )
    torch.manual_seed(seed)
    with torch.no_grad():  # move off the uniform start so the logits differ
        torch.nn.init.normal_(policy.net.score.weight, std=2.0)
        if policy.net.slot_action is not None:
            torch.nn.init.normal_(policy.net.slot_action, std=2.0)
    return policy


def test_a_fresh_policy_is_uniform_and_scores_every_slot_and_action() -> None:
    config = toy_config(NODES, LLMS)
    policy = Policy.create(config, HashEmbedder(16), seed=3)
    logits = policy.net(torch.randn(5, 16))
    assert logits.shape == (5, 1 + 3 + 1 + 2 + 1 + 1, 3 + len(LLMS))
    assert torch.all(logits == logits[0, 0, 0])


@pytest.mark.parametrize(
    ("slot_actions", "distinct"), [(False, False), (True, False), (True, True)]
)
def test_sampled_log_probs_equal_the_training_log_probs_at_the_same_temperature(
    slot_actions: bool, distinct: bool
) -> None:
    policy = _policy(slot_actions=slot_actions, distinct_proposers=distinct)
    rng = np.random.default_rng(0)
    queries = torch.nn.functional.normalize(torch.randn(40, 16), dim=1)
    for temperature in (0.5, 1.0, 3.0):
        decisions = [policy.decide(q, "sample", temperature=temperature, rng=rng) for q in queries]
        actions = torch.tensor([d.actions for d in decisions])
        masks = policy.masks([d.actions for d in decisions])
        logp, entropy = policy.log_probs(
            policy.net(queries), actions, masks, torch.full((40,), temperature)
        )
        sampled = torch.tensor([d.slot_log_probs for d in decisions], dtype=torch.float32)
        assert torch.allclose(logp, sampled, atol=1e-5)
        assert torch.all(entropy >= -1e-6)
        # forced slots (a dropped node's proposers) carry nothing
        forced = masks.sum(-1) == 1
        assert torch.all(logp[forced] == 0) and torch.all(entropy[forced].abs() < 1e-6)
        repeats = [
            len(llms) - len(set(llms))
            for d in decisions
            for props in policy.assignment(d).proposers.values()
            if (llms := [m for m in props if m in LLMS])
        ]
        assert (max(repeats) == 0) if distinct else (max(repeats) > 0)


def test_sampling_frequencies_follow_the_tempered_softmax() -> None:
    policy = _policy(seed=1, synthesizer_skip=False, pseudo_synthesizers=False)
    query = torch.nn.functional.normalize(torch.randn(16), dim=0)
    temperature = 2.0
    rng = np.random.default_rng(1)
    n = 4000
    all_logits = policy.net(query[None])[0].detach()
    # decide() is a forward pass plus decide_logits(logits / T); the pass is done once here
    scaled = (all_logits / temperature).double().numpy()
    first = np.bincount(
        [
            policy.decide_logits(scaled, "sample", temperature=temperature, rng=rng).actions[0]
            for _ in range(n)
        ],
        minlength=len(policy.layout.actions),
    )
    assert policy.decide(query, "sample", temperature=temperature, rng=rng).temperature == 2.0
    logits = all_logits[0]
    mask = torch.from_numpy(policy.rules.start().mask().copy())
    expected = torch.softmax((logits / temperature).masked_fill(~mask, -1e9), -1).numpy()
    assert first[~mask.numpy()].sum() == 0
    # every allowed action within 4 standard errors of its probability
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(first / n - expected) <= 4 * se + 1e-9)


def test_greedy_takes_the_best_allowed_action_of_every_slot() -> None:
    policy = _policy(seed=2)
    query = torch.randn(16)
    decision = policy.decide(query, "greedy")
    logits = policy.net(query[None])[0].detach().numpy()
    masks = policy.rules.masks(decision.actions)
    for s, a in enumerate(decision.actions):
        assert a == int(np.where(masks[s], logits[s], -np.inf).argmax())
    assert not decision.explore


def test_rotation_hands_the_first_positions_top_n_to_the_proposers_round_robin() -> None:
    policy = _policy(seed=4, synthesizer_skip=False, proposer_skip=False)
    policy.rotation_n = 2
    query = torch.randn(16)
    decision = policy.decide(query, "rotation")
    logits = policy.net(query[None])[0].detach().numpy()
    layout = policy.layout
    x_p0 = next(i for i, s in enumerate(layout.slots) if s.node == "x" and s.position == "p0")
    allowed = policy.rules.masks(decision.actions)[x_p0]
    ranked = [int(a) for a in np.argsort(-logits[x_p0]) if allowed[a]][:2]
    chosen = layout.decode(decision.actions).proposers["x"]
    assert [layout.action_index(c) for c in chosen] == [ranked[0], ranked[1], ranked[0]]


def test_planner_embeds_decides_and_names_the_llms() -> None:
    config = toy_config(NODES, LLMS)
    policy = _policy()
    planner = PolicyPlanner(policy, HashEmbedder(16), version=7, temperature=1.5, seed=0)
    greedy = planner.plan("What is 2+2?")
    assert greedy.policy_version == 7 and not greedy.explore
    assert greedy.assignment == planner.plan("What is 2+2?").assignment
    explored = planner.plan("What is 2+2?", explore=True)
    assert explored.explore and explored.decision.temperature == 1.5
    assignment = planner.assign(config, "What is 2+2?")
    assert assignment.edges == list(config.edges)
    assert set(assignment.proposers) == set(NODES)
    explored_a = planner.assign(config, _Request("What is 2+2?", explore=True))
    assert set(explored_a.synthesizers) == set(NODES)
    assert explored_a.sampled and explored_a.policy_version == 7
    assert explored_a.temperature == 1.5 and explored_a.log_probs is not None
    assert len(explored_a.log_probs) == len(policy.layout.slots)
    assert not assignment.sampled and assignment.log_probs is None
    with pytest.raises(ValueError):
        PolicyPlanner(policy, HashEmbedder(16), mode="sample")


@dataclass(frozen=True)
class _Request:
    task_text: str
    explore: bool = False


def test_layout_round_trips_assignments_and_json() -> None:
    config = toy_config(NODES, LLMS)
    layout = SlotLayout.from_config(config, answerless={"Checker"})
    a = SlotAssignment(
        {"x": ("big", "skip", "cheap"), "y": ("mid", "mid"), "z": ("skip",)},
        {"x": "vote", "y": "huge", "z": "skip"},
        decision=config.decision,
    )
    assert layout.decode(layout.encode(a)) == a
    assert SlotLayout.from_json(layout.to_json()) == layout
    assert SlotAssignment.from_json(a.to_json()) == a


def test_slot_actions_give_each_slot_its_own_preference_and_survive_a_checkpoint() -> None:
    from hieramas.learner.checkpoint import CheckpointMeta, decode_checkpoint, encode_checkpoint

    plain, mixed = _policy(seed=2), _policy(seed=2, slot_actions=True)
    assert plain.net.slot_action is None
    assert mixed.net.slot_action is not None
    query = torch.nn.functional.normalize(torch.randn(1, 16), dim=1)
    with torch.no_grad():
        mixed.net.slot_action.zero_()
        assert torch.allclose(mixed.net(query), plain.net(query))  # zero preferences add nothing
        mixed.net.slot_action[1, 4] = 50.0  # slot 1 (a proposer) prefers action 4 outright
    assert mixed.decide(query[0]).actions[1] == 4
    assert mixed.snapshot().decide(query[0]).actions == mixed.decide(query[0]).actions
    for policy in (plain, mixed):
        meta = CheckpointMeta(
            version=1, parent=None, config_name="toy", config_version=1,
            layout=policy.layout.to_json(), embedder="hash-16", dim=16,
            hidden=policy.net.hidden, seed=2,
        )  # fmt: skip
        back = decode_checkpoint(encode_checkpoint(policy, meta)).policy()
        assert (back.net.slot_action is None) == (policy.net.slot_action is None)
        with torch.no_grad():
            assert torch.allclose(back.net(query), policy.net(query))


def test_kind_columns_let_a_synthesizer_score_llms_apart_from_its_proposers() -> None:
    from hieramas.learner.checkpoint import CheckpointMeta, decode_checkpoint, encode_checkpoint

    plain, split = _policy(seed=3), _policy(seed=3, kind_columns=True)
    assert plain.net.synth_col is None and split.net.synth_col is not None
    query = torch.nn.functional.normalize(torch.randn(1, 16), dim=1)
    with torch.no_grad():
        assert torch.allclose(split.net(query), plain.net(query))  # equal until trained apart
        assert split.net.synth_col is not None
        split.net.synth_col.weight.mul_(-1.0)
        moved = split.net(query)[0]
    synth = [i for i, s in enumerate(split.layout.slots) if s.kind != "proposer"]
    proposers = [i for i, s in enumerate(split.layout.slots) if s.kind == "proposer"]
    base = plain.net(query)[0].detach()
    assert torch.allclose(moved[proposers], base[proposers])  # the proposers' scores stay
    assert not torch.allclose(moved[synth], base[synth])  # the synthesizers' move alone
    meta = CheckpointMeta(
        version=1, parent=None, config_name="toy", config_version=1,
        layout=split.layout.to_json(), embedder="hash-16", dim=16, hidden=split.net.hidden, seed=3,
    )  # fmt: skip
    back = decode_checkpoint(encode_checkpoint(split, meta)).policy()
    assert back.net.synth_col is not None
    with torch.no_grad():
        assert torch.allclose(back.net(query), split.net(query))
        assert torch.allclose(split.snapshot().net(query), split.net(query))
