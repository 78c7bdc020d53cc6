"""Sequential masks: who may skip, and the joint distribution they define."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from learner_support import toy_config

from hieramas.learner.masks import MaskRules
from hieramas.learner.slots import LayoutError, SlotAssignment, SlotLayout, SlotOptions

LLMS = {"cheap": 0.1, "mid": 1.0, "big": 5.0}


def _layout(
    nodes: dict[str, tuple[str, int]],
    answerless: set[str] | None = None,
    **opts: bool,
) -> SlotLayout:
    return SlotLayout.from_config(
        toy_config(nodes, LLMS), answerless=answerless or set(), options=SlotOptions(**opts)
    )


def _names(layout: SlotLayout, mask: np.ndarray) -> set[str]:
    return {layout.actions[i] for i in np.flatnonzero(mask)}


def test_synthesizer_comes_first_and_a_dropped_node_forces_its_proposers_to_skip() -> None:
    layout = _layout({"x": ("X", 2), "y": ("Y", 1)})
    assert [(s.node, s.position) for s in layout.slots] == [
        ("x", "synthesizer"), ("x", "p0"), ("x", "p1"), ("y", "synthesizer"), ("y", "p0"),
    ]  # fmt: skip
    walker = MaskRules(layout).start()
    assert _names(layout, walker.mask()) == {"skip", "vote", "pass", *LLMS}
    walker.push(layout.action_index("skip"))
    assert _names(layout, walker.mask()) == {"skip"}
    walker.push(layout.action_index("skip"))
    assert _names(layout, walker.mask()) == {"skip"}
    walker.push(layout.action_index("skip"))
    # y is the last answering supernode and x was dropped: y may not skip
    assert _names(layout, walker.mask()) == {"vote", "pass", *LLMS}


def test_vote_or_pass_keeps_one_proposer() -> None:
    layout = _layout({"x": ("X", 2)})
    rules = MaskRules(layout)
    for how in ("vote", "pass"):
        walker = rules.start()
        walker.push(layout.action_index(how))
        assert "skip" in _names(layout, walker.mask())
        walker.push(layout.action_index("skip"))
        assert _names(layout, walker.mask()) == set(LLMS)
    # an LLM synthesizer may answer alone
    actions = layout.encode(SlotAssignment({"x": ("skip", "skip")}, {"x": "mid"}, "cheap"))
    rules.masks(actions)


def test_options_switch_the_optional_actions_off() -> None:
    layout = _layout(
        {"x": ("X", 1), "pm": ("PM", 1)},
        answerless={"PM"},
        synthesizer_skip=False,
        pseudo_synthesizers=False,
        proposer_skip=False,
    )
    for mask in MaskRules(layout).masks(layout.encode(SlotAssignment(
        {"x": ("mid",), "pm": ("big",)}, {"x": "cheap", "pm": "cheap"}, "cheap"
    ))):  # fmt: skip
        assert _names(layout, mask) == set(LLMS)


def test_answerless_roles_get_no_vote_and_do_not_count_as_answering() -> None:
    layout = _layout({"pm": ("PM", 1), "x": ("X", 1)}, answerless={"PM"})
    walker = MaskRules(layout).start()
    # pm is answerless: it may be dropped, and has nothing to vote on
    assert _names(layout, walker.mask()) == {"skip", "pass", *LLMS}
    walker.push(layout.action_index("skip"))
    walker.push(layout.action_index("skip"))
    # x is the only answering supernode: it stays
    assert _names(layout, walker.mask()) == {"vote", "pass", *LLMS}
    # the same when x comes first: it is still the last answering supernode
    layout2 = _layout({"x": ("X", 1), "pm": ("PM", 1)}, answerless={"PM"})
    assert "skip" not in _names(layout2, MaskRules(layout2).start().mask())


def test_a_disallowed_action_is_refused() -> None:
    layout = _layout({"x": ("X", 1)})
    with pytest.raises(LayoutError):
        MaskRules(layout).masks(
            layout.encode(SlotAssignment({"x": ("mid",)}, {"x": "skip"}, "big"))
        )
    with pytest.raises(LayoutError):
        layout.encode(SlotAssignment({"x": ("gpt-9",)}, {"x": "big"}, "big"))


_node_specs = st.lists(
    st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=5
)  # (proposers, answerless?)


@settings(max_examples=60, deadline=None)
@given(
    specs=_node_specs,
    synth_skip=st.booleans(),
    pseudo=st.booleans(),
    prop_skip=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_sampled_assignments_always_keep_the_rules(
    specs: list[tuple[int, bool]], synth_skip: bool, pseudo: bool, prop_skip: bool, seed: int
) -> None:
    from hieramas.learner.embeddings import HashEmbedder
    from hieramas.learner.policy import Policy

    nodes = {f"n{i}": (f"R{i}", k) for i, (k, _) in enumerate(specs)}
    answerless = {f"R{i}" for i, (_, silent) in enumerate(specs) if silent}
    config = toy_config(nodes, LLMS)
    layout = SlotLayout.from_config(
        config,
        answerless=answerless,
        options=SlotOptions(
            synthesizer_skip=synth_skip, pseudo_synthesizers=pseudo, proposer_skip=prop_skip
        ),
    )
    policy = Policy.create(config, HashEmbedder(8), layout=layout, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    # logits strongly favouring skip: the constraints must bind, not luck
    logits = rng.normal(size=(len(layout.slots), len(layout.actions)))
    logits[:, layout.action_index("skip")] += 4.0
    answering = [n for n, (role, _) in nodes.items() if role not in answerless]
    decisions = [
        policy.decide_logits(logits, "sample", temperature=1.0, rng=rng) for _ in range(20)
    ]
    decisions += [policy.decide_logits(logits, m, temperature=1.0) for m in ("greedy", "rotation")]
    for decision in decisions:
        a = layout.decode(decision.actions)
        if answering:
            assert any(a.synthesizers[n] != "skip" for n in answering)
        for node in nodes:
            if a.synthesizers[node] in ("vote", "pass"):
                assert any(p != "skip" for p in a.proposers[node])
            if a.synthesizers[node] == "skip":
                assert set(a.proposers[node]) == {"skip"}
            if a.synthesizers[node] == "vote":
                assert nodes[node][0] not in answerless
        MaskRules(layout).masks(decision.actions)  # replays under the same masks


def test_distinct_proposers_never_repeat_an_llm_in_a_supernode_until_every_llm_has_one() -> None:
    layout = _layout({"x": ("X", 4), "y": ("Y", 2)}, distinct_proposers=True)
    walker = MaskRules(layout).start()
    walker.push(layout.action_index("big"))  # x's synthesizer: its LLM does not count
    assert _names(layout, walker.mask()) == {"skip", *LLMS}
    walker.push(layout.action_index("mid"))
    assert _names(layout, walker.mask()) == {"skip", "cheap", "big"}
    walker.push(layout.action_index("skip"))  # a skip takes no LLM
    assert _names(layout, walker.mask()) == {"skip", "cheap", "big"}
    walker.push(layout.action_index("cheap"))
    assert _names(layout, walker.mask()) == {"skip", "big"}
    walker.push(layout.action_index("big"))
    walker.push(layout.action_index("mid"))  # y's synthesizer opens a new supernode
    assert _names(layout, walker.mask()) == {"skip", *LLMS}
    walker.push(layout.action_index("mid"))
    assert _names(layout, walker.mask()) == {"skip", "cheap", "big"}
    with pytest.raises(LayoutError, match="not allowed"):
        walker.push(layout.action_index("mid"))
    # more proposers than LLMs and no skip: once each LLM has one, any LLM again
    crowded = _layout({"x": ("X", 4)}, distinct_proposers=True, proposer_skip=False)
    actions = crowded.encode(
        SlotAssignment({"x": ("cheap", "mid", "big", "mid")}, {"x": "mid"}, "cheap")
    )
    masks = MaskRules(crowded).masks(actions)
    assert [_names(crowded, m) for m in masks[1:]] == [
        set(LLMS), {"mid", "big"}, {"big"}, set(LLMS),
    ]  # fmt: skip
    assert "distinct_proposers" not in _layout({"x": ("X", 1)}).to_json()["options"]
    assert SlotLayout.from_json(layout.to_json()).options.distinct_proposers
