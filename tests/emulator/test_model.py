"""Unit tests of the behavioural model: hashing, calibration, decision rules, skill."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from hieramas.emulator.behaviour import Candidate, decide, plurality
from hieramas.emulator.calibration import CalibrationError, calibrate_theta, mean_p
from hieramas.emulator.engine import Engine
from hieramas.emulator.hashing import Stream, normal, uniform
from hieramas.tasks.datasets import Item


def test_hash_draws_are_deterministic_and_roughly_uniform() -> None:
    us = [uniform(0, "m", i) for i in range(4000)]
    assert us == [uniform(0, "m", i) for i in range(4000)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert abs(statistics.mean(us) - 0.5) < 0.02
    zs = [normal("b", i) for i in range(4000)]
    assert abs(statistics.mean(zs)) < 0.06
    assert abs(statistics.stdev(zs) - 1.0) < 0.05
    assert uniform(1, "m", 1) != uniform(2, "m", 1)


def test_stream_equals_flat_hash() -> None:
    st = Stream(7, "model", None, "role")
    assert st.uniform("x") == uniform(7, "model", None, "role", "x")
    assert st.normal("y", 3) == normal(7, "model", None, "role", "y", 3)
    assert st.rng("p").random() == st.rng("p").random()


def test_calibrate_theta_hits_the_target() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(size=2000)
    off = rng.normal(scale=0.3, size=2000)
    for target in (0.3, 0.69, 0.95):
        theta = calibrate_theta(b, off, 1.7, target)
        assert mean_p(theta, b, off, 1.7) == pytest.approx(target, abs=1e-6)


def test_calibrate_theta_rejects_bad_input() -> None:
    b = np.zeros(3)
    with pytest.raises(CalibrationError):
        calibrate_theta(b, b, 1.7, 1.0)
    with pytest.raises(CalibrationError):
        calibrate_theta(np.zeros(0), np.zeros(0), 1.7, 0.5)
    with pytest.raises(CalibrationError):
        calibrate_theta(b, np.zeros(2), 1.7, 0.5)
    with pytest.raises(CalibrationError, match="not reachable"):
        calibrate_theta(b, b, 1.7, 0.999999, lo=-1, hi=1)


def _cands(*spec: tuple[str, bool]) -> list[Candidate]:
    return [Candidate(key=k, raw=k, correct=c) for k, c in spec]


def _rate(rule: str, p: float, cands: list[Candidate], n: int = 20000, **kw: float) -> float:
    traits = {"susceptibility": 0.0, "synthesis_skill": 0.0, "self_solve_factor": 0.3, **kw}
    hits = 0
    for i in range(n):
        d = decide(rule, p, cands, u=lambda purpose, i=i: uniform("t", i, purpose), **traits)  # type: ignore[arg-type]
        hits += d.correct
    return hits / n


def test_solo_rule_follows_p() -> None:
    assert _rate("solo", 0.7, []) == pytest.approx(0.7, abs=0.015)


def test_synthesis_rule_probabilities() -> None:
    mixed = _cands(("A", True), ("B", False), ("B", False), ("C", False))
    # picks the correct proposal with s + (1 - s) * share
    assert _rate("synth", 0.5, mixed, synthesis_skill=0.6) == pytest.approx(
        0.6 + 0.4 * 0.25, abs=0.015
    )
    assert _rate("synth", 0.5, mixed, synthesis_skill=0.0) == pytest.approx(0.25, abs=0.015)
    # none correct: solves it alone with r * p_solo
    wrong = _cands(("B", False), ("C", False))
    assert _rate("synth", 0.8, wrong, synthesis_skill=1.0) == pytest.approx(0.3 * 0.8, abs=0.015)
    # when wrong it returns the most common wrong proposal
    d = decide("synth", 0.5, mixed, susceptibility=0, synthesis_skill=0, self_solve_factor=0,
               u=lambda purpose: 0.99)  # fmt: skip
    assert not d.correct and d.answer is not None and d.answer.key == "B"


def test_herding_adopts_the_majority_with_probability_w() -> None:
    wrong_majority = _cands(("B", False), ("B", False), ("A", True))
    # p_solo = 1: every miss comes from herding onto the wrong majority
    assert _rate("herd", 1.0, wrong_majority, susceptibility=0.4) == pytest.approx(0.6, abs=0.015)
    right_majority = _cands(("A", True), ("A", True), ("B", False))
    assert _rate("herd", 0.0, right_majority, susceptibility=0.4) == pytest.approx(0.4, abs=0.015)
    assert plurality(wrong_majority).key == "B"


def test_role_fit_and_subject_skill_shift_solo_probability(engine: Engine) -> None:
    item = Item(id="t/law", dataset="mmlu_redux", domain="mmlu", question="q", answer="A",
                subject="professional_law")  # fmt: skip
    skill = engine.skill
    base = skill.p_solo("gpt-4o-mini", item)
    lawyer = skill.p_solo("gpt-4o-mini", item, "Lawyer")
    historian = skill.p_solo("gpt-4o-mini", item, "Historian")
    assert lawyer > base > historian
    assert skill.role_fit("gpt-4o-mini", "Lawyer", "mmlu", "professional_law") == 0.5  # override
    assert skill.role_fit("llama-8b", "Lawyer", "mmlu", "professional_law") == 0.4  # family
    assert skill.role_fit("llama-8b", "Unheard-of Role", "mmlu", "professional_law") == 0.0
    assert skill.role_family("Senior Lawyer") == "law"


def test_difficulty_is_shared_and_shifted_by_metadata(engine: Engine) -> None:
    items = [
        Item(
            id=f"math500/x{i}-{lvl}",
            dataset="math500",
            domain="math",
            question="q",
            answer="1",
            subject="Algebra",
            meta={"level": lvl},
        )
        for i, lvl in itertools.product(range(400), (1, 5))
    ]
    easy = statistics.mean(engine.skill.difficulty(it) for it in items if it.meta["level"] == 1)
    hard = statistics.mean(engine.skill.difficulty(it) for it in items if it.meta["level"] == 5)
    assert hard - easy > 2.0
    # all models share b_i: a strong and a weak model agree on which items are hard
    ps = [
        (engine.skill.p_solo("llama-8b", it), engine.skill.p_solo("gpt-5-mini", it)) for it in items
    ]
    ranks = np.argsort(np.argsort(np.array(ps), axis=0), axis=0)
    assert np.corrcoef(ranks.T)[0, 1] > 0.99  # same subject: both are monotone in b_i


async def test_predecessors_sway_susceptible_models(engine: Engine) -> None:
    """Through real prompts: a wrong upstream majority hurts llama-8b (w = 0.6), a right one helps."""
    from hieramas.emulator.api import ChatCompletionRequest
    from hieramas.tasks import prompts
    from hieramas.tasks.datasets import load
    from hieramas.tasks.graders import grade

    items = load("mmlu_redux")[::20][:250]
    acc: dict[str, float] = {}
    for setting in ("alone", "wrong", "right"):
        hits = 0
        for item in items:
            wrong = "A" if item.answer != "A" else "B"
            upstream = {"alone": [], "wrong": [wrong, wrong], "right": [item.answer] * 2}[setting]
            preds = [
                (f"Critic {i}", f"I checked it. The answer is ({x}).")
                for i, x in enumerate(upstream)
            ]
            messages = prompts.proposer_messages("mmlu", "Historian", item.question, preds)
            req = ChatCompletionRequest.model_validate({"model": "llama-8b", "messages": messages})
            text = (await engine.complete(req)).choices[0].text
            hits += grade(item, text).correct
        acc[setting] = hits / len(items)
    print(f"\nemulated llama-8b, MMLU, n={len(items)}: {acc}")
    # expected: alone ≈ p, wrong ≈ 0.4 p, right ≈ 0.6 + 0.4 p (p ≈ 0.65 for a Historian)
    # (standard error of each paired difference ≈ 0.04 at n = 250)
    assert acc["wrong"] <= acc["alone"] - 0.25, acc
    assert acc["right"] >= acc["alone"] + 0.08, acc


async def test_reviewing_roles_weigh_predecessors_instead_of_herding(engine: Engine) -> None:
    """A Critic (role family with ``predecessors: synth``) facing a wrong upstream majority that
    still contains the right answer picks it with its synthesis skill; a Historian herds."""
    from hieramas.emulator.api import ChatCompletionRequest
    from hieramas.tasks import prompts
    from hieramas.tasks.datasets import load
    from hieramas.tasks.graders import grade

    items = load("mmlu_redux")[5::15][:300]
    acc = {}
    for role in ("Critic", "Historian"):
        hits = 0
        for item in items:
            wrong = "A" if item.answer != "A" else "B"
            upstream = [wrong, wrong, item.answer]
            preds = [(f"Agent {i}", f"The answer is ({x}).") for i, x in enumerate(upstream)]
            messages = prompts.proposer_messages("mmlu", role, item.question, preds)
            req = ChatCompletionRequest.model_validate({"model": "qwen3-8b", "messages": messages})
            hits += grade(item, (await engine.complete(req)).choices[0].text).correct
        acc[role] = hits / len(items)
    print(f"\nemulated qwen3-8b, wrong upstream majority, n={len(items)}: {acc}")
    # expected: Critic ≈ s + (1 - s)/3 ≈ 0.66; Historian ≈ (1 - w) · p ≈ 0.45; the standard
    # error of the difference at n = 300 is ≈ 0.04
    assert acc["Critic"] >= acc["Historian"] + 0.1, acc
