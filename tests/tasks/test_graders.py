"""Graders: multiple choice, GSM8K, MATH (gold self-agreement, curated pairs, sympy time limit)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.graders import grade, grade_gsm8k, grade_math, grade_mcq, math_equivalent
from hieramas.tasks.graders import math as math_grader
from hieramas.tasks.graders.sympy_worker import SympyChecker
from hieramas.tasks.mathtext import last_boxed

PAIRS = Path(__file__).parent / "data" / "math_equivalence_pairs.jsonl"


@pytest.fixture(scope="module")
def math_items() -> list[ds.Item]:
    return ds.load("math500")


def test_mcq() -> None:
    item = next(i for i in ds.load("mmlu") if i.id == "abstract_algebra/2")
    assert item.answer == "B"
    assert grade_mcq(item, "Reasoning.\nThe answer is (B)").correct
    wrong = grade_mcq(item, "**C**")
    assert wrong.outcome == "wrong" and wrong.predicted == "C"
    assert grade_mcq(item, "The answer is Yes, with p=3.").correct  # choice text quoted back
    assert grade_mcq(item, "I cannot decide.").outcome == "unparseable"
    assert grade(item, "Answer: B.").correct


def test_gsm8k() -> None:
    item = ds.load("gsm8k")[0]
    assert item.answer == "72"
    assert grade_gsm8k(item, "48 + 24 = 72.\nThe answer is 72").correct
    assert grade_gsm8k(item, "#### 72.00").correct
    assert grade_gsm8k(item, "The answer is $72").correct
    assert grade_gsm8k(item, "The answer is 27").outcome == "wrong"
    assert grade_gsm8k(item, "seventy-two").outcome == "unparseable"


def test_math_gold_answers_agree_with_their_solutions(math_items: list[ds.Item]) -> None:
    """Every MATH-500 answer is equivalent to the last boxed answer of its own solution."""
    disagreements = []
    for item in math_items:
        boxed = last_boxed(str(item.meta["solution"]))
        assert boxed is not None, item.id
        reply = f"Working...\nThe answer is $\\boxed{{{boxed}}}$."
        result = grade_math(item, reply)
        if not result.correct:
            disagreements.append((item.id, item.answer, boxed))
    assert disagreements == []
    assert len(math_items) == 500


def test_math_curated_pairs_accuracy() -> None:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    assert len(rows) >= 150
    assert sum(r["equivalent"] for r in rows) >= 40 and sum(not r["equivalent"] for r in rows) >= 40
    misses = [r for r in rows if math_equivalent(r["a"], r["b"]).equal != r["equivalent"]]
    accuracy = 1 - len(misses) / len(rows)
    assert accuracy >= 0.98, misses
    # symmetric: the order of the two answers does not matter
    flipped = [r for r in rows if math_equivalent(r["b"], r["a"]).equal != r["equivalent"]]
    assert 1 - len(flipped) / len(rows) >= 0.98, flipped


def test_math_outcomes(math_items: list[ds.Item]) -> None:
    item = math_items[0]  # \left( 3, \frac{\pi}{2} \right)
    assert grade_math(item, "so $(r,\\theta) = \\boxed{(3, \\pi/2)}$").correct
    wrong = grade_math(item, "\\boxed{(3, \\pi)}")
    assert wrong.outcome == "wrong" and wrong.predicted == "(3, \\pi)"
    assert grade_math(item, "The answer is (3, \\frac{\\pi}{2}).").correct
    assert grade_math(item, "I don't know").outcome == "unparseable"
    assert grade_math(item, "\\boxed{}").outcome == "unparseable"
    assert grade_math(item, "\\boxed{(3, \\frac{\\pi}{2}").outcome == "unparseable"  # unbalanced


def test_math_methods() -> None:
    assert math_equivalent("\\dfrac12", "0.5").method == "string"
    assert math_equivalent("2\\sqrt2", "\\sqrt8").method == "numeric"
    verdict = math_equivalent("(a+5)(b+2)", "ab+2a+5b+10")
    assert verdict.equal and verdict.method == "sympy"
    assert math_equivalent("x^2+1", "(x+1)^2") == math_grader.MathVerdict(False, "numeric")


def test_sympy_cannot_hang_the_grader() -> None:
    checker = SympyChecker(timeout_s=0.5)
    math_grader.set_sympy_checker(checker)
    try:
        started = time.monotonic()
        # numerically equal at every point, and sympy's simplify takes far longer than 0.5 s
        verdict = math_equivalent(
            "(x+y+z+1)^{40}", "(x+y+z+1)^{38}(x^2+y^2+z^2+2xy+2xz+2yz+2x+2y+2z+1)"
        )
        assert time.monotonic() - started < 20
        assert verdict.equal and verdict.method == "numeric-fallback"
        assert checker.timeouts == 1
        assert checker.equal("2*x", "x+x") is True  # a fresh worker answers again
        assert checker.equal("x", "1/(") is None  # a sympy error is "unknown", not a crash
    finally:
        checker.close()
        math_grader.set_sympy_checker(None)


def test_grade_dispatch_rejects_general() -> None:
    item = ds.Item(id="g/0", dataset="x", domain="general", question="q", answer="a", subject="s")
    with pytest.raises(ValueError, match="no grader"):
        grade(item, "a")
