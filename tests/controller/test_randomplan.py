"""The random planner: uniform LLMs per slot, the same plan for the same item and seed."""

from __future__ import annotations

from collections import Counter

from hieramas.controller.config import HieraConfig, PlannerConfig, parse_config
from hieramas.controller.planner import PlanRequest
from hieramas.controller.planners import make_planner, planner_kinds
from hieramas.learner.trainconfig import to_yaml, training_config


def _config() -> HieraConfig:
    doc = training_config("mmlu")
    doc.pop("planner")
    return parse_config(to_yaml(doc))


def test_random_is_a_registered_kind_and_rejects_unknown_options() -> None:
    assert "random" in planner_kinds()
    planner = make_planner(PlannerConfig(kind="random", seed=3))  # type: ignore[call-arg]
    assert planner.kind == "random" and planner.heavy is False
    try:
        make_planner(PlannerConfig(kind="random", sede=3))  # type: ignore[call-arg]
    except ValueError as exc:
        assert "sede" in str(exc)
    else:
        raise AssertionError("an unknown option must be refused")


def test_the_same_item_and_seed_get_the_same_plan_and_every_slot_is_a_pool_llm() -> None:
    config = _config()
    planner = make_planner(PlannerConfig(kind="random", seed=1))  # type: ignore[call-arg]
    other = make_planner(PlannerConfig(kind="random", seed=2))  # type: ignore[call-arg]
    a = planner.assign(config, PlanRequest("q", item_id="mmlu/1", query_id="x"))
    b = planner.assign(config, PlanRequest("q", item_id="mmlu/1", query_id="y"))
    c = other.assign(config, PlanRequest("q", item_id="mmlu/1", query_id="x"))
    assert a.proposers == b.proposers and a.synthesizers == b.synthesizers
    assert (a.proposers, a.synthesizers) != (c.proposers, c.synthesizers)
    assert a.edges == list(config.edges) and a.policy_version is None
    assert set(a.synthesizers) == set(config.supernodes)
    for name, spec in config.supernodes.items():
        assert len(a.proposers[name]) == len(spec.proposers)
        assert set(a.proposers[name]) <= set(config.llms)
        assert a.synthesizers[name] in config.llms


def test_choices_are_spread_over_the_whole_pool() -> None:
    config = _config()
    planner = make_planner(PlannerConfig(kind="random"))
    seen: Counter[str] = Counter()
    for i in range(200):
        plan = planner.assign(config, PlanRequest("q", item_id=f"mmlu/{i}"))
        seen.update(plan.synthesizers.values())
        for slots in plan.proposers.values():
            seen.update(slots)
    # 200 queries x 24 slots over 8 LLMs: 600 expected each; a broken hash would skew it
    assert set(seen) == set(config.llms)
    assert all(450 < n < 750 for n in seen.values()), seen
