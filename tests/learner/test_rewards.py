"""Cost-aware rewards and multi-level attribution."""

from __future__ import annotations

import math

import pytest
from learner_support import toy_config

from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.rewards import (
    RewardConfig,
    cost_reward,
    final_reward,
    node_rewards,
    slot_rewards,
)
from hieramas.learner.slots import SlotAssignment, SlotLayout, SlotOptions

CFG = RewardConfig()


def test_solved_reward_decays_with_cost_down_to_its_floor() -> None:
    assert cost_reward(True, 0.0, CFG) == 1.0
    assert cost_reward(True, 0.001, CFG) == pytest.approx(math.exp(-0.3))
    assert cost_reward(True, 0.01, CFG) == 0.5  # exp(-3) < 0.5: the floor
    assert cost_reward(True, 1e6, CFG) == 0.5


def test_unsolved_reward_grows_more_negative_with_cost_down_to_its_floor() -> None:
    assert cost_reward(False, 0.0, CFG) == -1.0
    assert cost_reward(False, 0.001, CFG) == pytest.approx(-math.exp(0.3))
    assert cost_reward(False, 0.01, CFG) == -2.5
    assert cost_reward(False, 1e9, CFG) == -2.5  # no overflow


def test_missing_or_unparseable_verdict_counts_as_unsolved() -> None:
    assert cost_reward(None, 0.0005, CFG) == cost_reward(False, 0.0005, CFG)


def test_lambdas_are_configurable_and_separate() -> None:
    cfg = RewardConfig(lam=100.0, lam_unsolved=10.0)
    assert cost_reward(True, 0.002, cfg) == pytest.approx(math.exp(-0.2))
    assert cost_reward(False, 0.002, cfg) == pytest.approx(-math.exp(0.02))


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": 1.5}, {"alpha": -0.1}, {"lam": -1.0}, {"mode": "per-edge"}, {"dropped": "zero"}],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RewardConfig(**kwargs)  # type: ignore[arg-type]


def _episode(nodes: list[NodeOutcome], final: bool | None, total: float) -> Episode:
    return Episode(
        query_id="q1",
        item_id="mmlu/1",
        domain="toy",
        config_name="toy",
        config_version=3,
        policy_version=1,
        query_text="What?",
        assignment=SlotAssignment(
            proposers={n.node: ("a",) for n in nodes},
            synthesizers={n.node: "a" if n.ran else "skip" for n in nodes},
            decision="a",
        ),
        nodes={n.node: n for n in nodes},
        final_correct=final,
        total_cost_usd=total,
        explore=True,
        temperature=1.0,
    )


def _node(name: str, correct: bool | None, cost: float, **kw: object) -> NodeOutcome:
    return NodeOutcome(
        node=name,
        role=str(kw.get("role", name.title())),
        ran=bool(kw.get("ran", True)),
        answer=None if correct is None else "A",
        correct=correct,
        cost_usd=cost,
        answerless=bool(kw.get("answerless", False)),
    )


def test_final_reward_charges_the_whole_query_cost() -> None:
    ep = _episode([_node("x", True, 0.0005), _node("y", True, 0.0005)], True, 0.0015)
    # the whole query (both nodes and the decision), not only the decision's share
    assert final_reward(ep, CFG) == pytest.approx(math.exp(-300 * 0.0015))


def test_multi_level_mixes_the_node_reward_and_the_final_one() -> None:
    ep = _episode(
        [_node("right", True, 0.001), _node("wrong", False, 0.0005), _node("lost", None, 0.0)],
        True,
        0.002,
    )
    big_r = math.exp(-0.6)
    e = node_rewards(ep, RewardConfig(alpha=0.5))
    assert e["right"] == pytest.approx(0.5 * math.exp(-0.3) + 0.5 * big_r)
    assert e["wrong"] == pytest.approx(0.5 * -math.exp(0.15) + 0.5 * big_r)
    assert e["lost"] == pytest.approx(0.5 * -1.0 + 0.5 * big_r)  # no answer: unsolved
    e1 = node_rewards(ep, RewardConfig(alpha=1.0))
    assert e1["wrong"] == pytest.approx(-math.exp(0.15))


def test_answerless_and_dropped_nodes_and_final_mode_take_the_final_reward() -> None:
    ep = _episode(
        [
            _node("pm", None, 0.001, role="Project Manager", answerless=True),
            _node("gone", None, 0.0, ran=False),
            _node("solver", False, 0.001),
        ],
        False,
        0.003,
    )
    big_r = -math.exp(0.9)
    e = node_rewards(ep, CFG)
    assert e["pm"] == pytest.approx(big_r)
    assert e["gone"] == pytest.approx(big_r)
    assert e["solver"] != pytest.approx(big_r)
    final_only = node_rewards(ep, RewardConfig(mode="final"))
    assert all(v == pytest.approx(big_r) for v in final_only.values())


def test_peers_credit_a_dropped_answering_node_with_its_running_peers_own_rewards() -> None:
    ep = _episode(
        [
            _node("pm", None, 0.001, role="Project Manager", answerless=True),
            _node("gone", None, 0.0, ran=False),
            _node("pm_gone", None, 0.0, role="Project Manager", answerless=True, ran=False),
            _node("right", True, 0.001),
            _node("wrong", False, 0.0005),
        ],
        True,
        0.002,
    )
    cfg = RewardConfig(alpha=0.5, dropped="peers")
    big_r = math.exp(-0.6)
    peers = (math.exp(-0.3) - math.exp(0.15)) / 2  # pm ran but has no answer of its own
    e = node_rewards(ep, cfg)
    assert e["gone"] == pytest.approx(0.5 * peers + 0.5 * big_r)
    # the running nodes and the answerless ones are credited as before
    before = node_rewards(ep, RewardConfig(alpha=0.5))
    assert before["gone"] == pytest.approx(big_r)
    assert {k: v for k, v in e.items() if k != "gone"} == pytest.approx(
        {k: v for k, v in before.items() if k != "gone"}
    )
    assert e["pm_gone"] == pytest.approx(big_r)
    final_only = node_rewards(ep, RewardConfig(mode="final", dropped="peers"))
    assert all(v == pytest.approx(big_r) for v in final_only.values())


def test_slot_rewards_give_every_slot_of_a_node_its_reward_and_the_decision_r() -> None:
    config = toy_config({"x": ("X", 2), "y": ("Y", 1)}, {"a": 1.0})
    layout = SlotLayout.from_config(
        config, answerless=set(), options=SlotOptions(decision_slot=True)
    )
    ep = _episode([_node("x", True, 0.0), _node("y", False, 0.0)], True, 0.0)
    rewards = slot_rewards(ep, layout, CFG)
    by_slot = {(s.node, s.position): float(r) for s, r in zip(layout.slots, rewards, strict=True)}
    assert by_slot == {
        ("x", "synthesizer"): 1.0,
        ("x", "p0"): 1.0,
        ("x", "p1"): 1.0,
        ("y", "synthesizer"): 0.0,  # 0.5·(−1) + 0.5·1
        ("y", "p0"): 0.0,
        ("decision", "decision"): 1.0,
    }
