"""Config validation: every problem is reported with its location."""

from __future__ import annotations

import pytest

from hieramas.controller.config import ConfigError, parse_config, topological_order
from hieramas.controller.planner import Assignment, PlanRequest, StaticPlanner, build_plan
from support import config_yaml, node

URL = "http://127.0.0.1:9/v1"


def problems(yaml_text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml_text)
    return info.value.problems


def test_valid_config_parses() -> None:
    cfg = parse_config(
        config_yaml(URL, {"a": node("Critic", ["fixed:A", "skip"], "fixed:B")}, name="ok")
    )
    assert cfg.name == "ok"
    assert cfg.model_spec("fixed:A").price_out_per_m == 2.0


def test_cycle_is_named() -> None:
    found = problems(
        config_yaml(
            URL,
            {n: node("Critic", ["fixed:A"], "fixed:A") for n in "abc"},
            [("a", "b"), ("b", "c"), ("c", "a")],
        )
    )
    assert any("cycle" in p and "a -> b -> c -> a" in p for p in found), found


def test_unknown_llms_roles_dangling_edges_and_empty_nodes_all_reported() -> None:
    found = problems(
        config_yaml(
            URL,
            {
                "a": node("Critic", ["gpt-9"], "fixed:A"),
                "b": node("Astrologer", [], "nope"),
            },
            [("a", "zz")],
            decision="missing",
        )
    )
    text = "\n".join(found)
    assert "supernodes.a.proposers[0]: unknown LLM 'gpt-9'" in text
    assert "supernodes.b.role: unknown role 'Astrologer'" in text
    assert "supernodes.b.proposers: a supernode needs at least one proposer slot" in text
    assert "supernodes.b.synthesizer: unknown LLM 'nope'" in text
    assert "dangling edge a -> zz" in text
    assert "decision: unknown LLM 'missing'" in text


def test_schema_errors_have_locations() -> None:
    found = problems("endpoints: {}\nllms: {}\nsupernodes: {a: {role: Critic}}\n")
    assert any(p.startswith("supernodes.a.proposers") for p in found), found
    assert any(p.startswith("decision") for p in found), found
    assert problems("- just a list") == ["top level: expected a mapping of config sections"]
    assert problems("a: [unclosed")[0].startswith("YAML:")


def test_unknown_domain_and_reserved_names() -> None:
    found = problems(
        config_yaml(URL, {"decision": node("Critic", ["fixed:A"], "fixed:A")}, domain="astrology")
    )
    assert any(p.startswith("domain: unknown domain") for p in found)
    assert any("invalid node id" in p for p in found)


def test_topological_order() -> None:
    assert topological_order(["c", "b", "a"], [("a", "b"), ("b", "c")]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="cycle"):
        topological_order(["a", "b"], [("a", "b"), ("b", "a")])


def test_plan_drops_skipped_nodes_and_their_edges() -> None:
    cfg = parse_config(
        config_yaml(
            URL,
            {
                "a": node("Critic", ["fixed:A", "skip"], "fixed:A"),
                "b": node("Doctor", ["fixed:B"], "skip"),
                "c": node("Lawyer", ["fixed:C"], "fixed:C"),
            },
            [("a", "b"), ("b", "c"), ("a", "c")],
        )
    )
    plan = build_plan(
        cfg, 3, StaticPlanner().assign(cfg, PlanRequest("q")), query_id="q1", task_text="q"
    )
    assert set(plan.nodes) == {"a", "c"}
    assert plan.skipped_nodes == ("b",)
    assert plan.nodes["c"].preds == ("a",)
    assert plan.nodes["a"].proposers == ("fixed:A", None)
    assert plan.nodes["a"].active_slots == [0]
    assert set(plan.llms) == {"fixed:A", "fixed:C"}
    assert plan.config_version == 3
    # a per-query assignment overrides the config's choices
    custom = Assignment(
        proposers={"a": ["fixed:B", "fixed:B"], "b": ["fixed:B"], "c": ["skip"]},
        synthesizers={"a": "fixed:B", "b": "fixed:B", "c": "skip"},
        edges=[("a", "b")],
    )
    plan2 = build_plan(cfg, 3, custom, query_id="q2", task_text="q")
    assert set(plan2.nodes) == {"a", "b"} and plan2.nodes["b"].preds == ("a",)
    assert type(plan2).from_wire(plan2.to_wire()) == plan2


def test_placement_is_validated_and_carried_into_the_plan() -> None:
    base = config_yaml(
        URL,
        {"a": node("Critic", ["fixed:A"], "fixed:A"), "b": node("Doctor", ["fixed:A"], "fixed:A")},
    )
    found = problems(base + "placement:\n  gpu: [a, zz]\n  'bad group': [b]\n  cpu: [a]\n")
    text = "\n".join(found)
    assert "placement.gpu: no supernode 'zz'" in text
    assert "placement.bad group: invalid group name" in text
    assert "placement.cpu: 'a' is already placed in group 'gpu'" in text
    cfg = parse_config(base + "placement:\n  gpu: [b, decision]\n")
    plan = build_plan(
        cfg, 1, StaticPlanner().assign(cfg, PlanRequest("q")), query_id="q", task_text="q"
    )
    assert plan.nodes["b"].group == "gpu" and plan.nodes["a"].group is None
    assert plan.group_of("decision") == "gpu"
    assert type(plan).from_wire(plan.to_wire()) == plan


@pytest.mark.parametrize("synthesizer", ["vote", "pass"])
def test_pseudo_synthesizer_over_only_skipped_proposers_is_rejected(synthesizer: str) -> None:
    found = problems(
        config_yaml(
            URL,
            {
                "ok": node("Critic", ["skip", "fixed:A"], synthesizer),
                "empty": node("Doctor", ["skip", "skip"], synthesizer),
            },
        )
    )
    assert found == [
        f"supernodes.empty.synthesizer: {synthesizer!r} chooses among proposals, but every "
        "proposer of supernode 'empty' is 'skip' (give it an LLM to answer alone, "
        "or 'skip' to drop the supernode)"
    ]
    # an LLM synthesizer answers alone, and a skipped one drops the supernode: both are fine
    for fine in ("fixed:B", "skip"):
        parse_config(config_yaml(URL, {"empty": node("Doctor", ["skip", "skip"], fine)}))
