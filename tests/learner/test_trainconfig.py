"""Training configs and the per-slot choices read back from query results."""

from __future__ import annotations

from hieramas.controller.config import parse_config
from hieramas.learner.querying import Selection, selection_of
from hieramas.learner.slots import SlotLayout
from hieramas.learner.trainconfig import to_yaml, training_config


def test_the_default_mmlu_config_has_every_role_two_proposers_the_full_dag_and_the_whole_pool() -> (
    None
):
    config = parse_config(to_yaml(training_config("mmlu")))
    assert len(config.supernodes) == 8
    assert all(len(s.proposers) == 2 for s in config.supernodes.values())
    assert len(config.edges) == 8 * 7 // 2
    assert len(config.llms) == 8 and config.decision == "gpt-5-mini"
    assert config.planner is not None and config.planner.kind == "learned"
    assert "seed" not in config.planner.options  # see trainconfig: per-version reseeding
    layout = SlotLayout.from_config(config)
    assert len(layout.slots) == 24 and len(layout.actions) == 11


def test_roles_and_edges_can_be_cut_for_smaller_runs() -> None:
    config = parse_config(to_yaml(training_config("mmlu", roles=3, edges="none")))
    assert list(s.role for s in config.supernodes.values()) == [
        "Knowledgeable Expert", "Critic", "Mathematician",
    ]  # fmt: skip
    assert config.edges == []
    math = parse_config(to_yaml(training_config("math")))
    assert len(math.supernodes) == 3 and len(math.edges) == 3


def test_selection_counts_every_slot_and_a_dropped_node_as_skips() -> None:
    result = {
        "nodes": {
            "a": {"models": {"proposers": ["x", None], "synthesizer": "y"}},
            "b": {"models": {"proposers": ["x", "x"], "synthesizer": "vote"}},
        },
        "skipped_nodes": ["c"],
    }
    sel = selection_of(result, {"a": 2, "b": 2, "c": 3})
    assert sel.synthesizer == {"y": 1, "vote": 1, "skip": 1}
    assert sel.proposer == {"x": 3, "skip": 4}
    assert sel.share("x") == 3 / 10 and sel.share("skip", "proposer") == 4 / 7
    total = Selection.total([sel, Selection.from_json(sel.to_json())])
    assert total.proposer["x"] == 6


def test_decode_rotation_is_the_planner_mode_of_evaluations_and_compare_follows_it() -> None:
    from hieramas.learner.compare import _mode

    greedy = training_config("mmlu")
    rotation = training_config("mmlu", decode="rotation")
    assert "mode" not in greedy["planner"]  # older runs' configs (and their digests) unchanged
    assert rotation["planner"]["mode"] == "rotation"
    assert parse_config(to_yaml(rotation)).planner.options["mode"] == "rotation"  # type: ignore[union-attr]
    assert (_mode(greedy), _mode(rotation)) == ("greedy", "rotation")
