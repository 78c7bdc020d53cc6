"""The MATH grader on labelled (gold, candidate) pairs built from MATH-500's gold answers.

``tests/tasks/data/math_labelled_pairs.jsonl`` is a hand-checked sample of the generator's
output (two pairs of each rewriting and label, seed 0, sampled with seed 1); the full set
is generated from the dataset at run time.  Target: no near miss accepted, >= 99% of the
equivalent rewritings accepted.  The math-verify comparison is ``bench/graders.py
--reference``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.graders import grade_math
from hieramas.tasks.mathpairs import Pair, generate

FIXTURE = Path(__file__).parent / "data" / "math_labelled_pairs.jsonl"


@pytest.fixture(scope="module")
def items() -> dict[str, ds.Item]:
    return {item.id: item for item in ds.load("math500")}


@pytest.fixture(scope="module")
def pairs(items: dict[str, ds.Item]) -> list[Pair]:
    return generate(items.values(), seed=0)


def accepted(item: ds.Item, candidate: str) -> bool:
    return grade_math(item, f"So the final answer is $\\boxed{{{candidate}}}$.").correct


def test_fixture_is_a_sample_of_the_generator(pairs: list[Pair]) -> None:
    rows = [Pair(**json.loads(line)) for line in FIXTURE.read_text().splitlines() if line]
    assert len(rows) >= 100
    assert set(rows) <= set(pairs)
    assert {r.kind for r in rows} == {p.kind for p in pairs}  # every rewriting is sampled


def test_generator_is_deterministic_and_consistent(
    items: dict[str, ds.Item], pairs: list[Pair]
) -> None:
    assert generate(items.values(), seed=0) == pairs
    labels: dict[tuple[str, str], bool] = {}
    for p in pairs:  # one label per (gold, candidate)
        assert labels.setdefault((p.gold, p.candidate), p.equivalent) == p.equivalent
    assert sum(p.equivalent for p in pairs) > 2000 and sum(not p.equivalent for p in pairs) > 2000


def test_fixture_pairs(items: dict[str, ds.Item]) -> None:
    rows = [Pair(**json.loads(line)) for line in FIXTURE.read_text().splitlines() if line]
    wrong = [r for r in rows if accepted(items[r.id], r.candidate) != r.equivalent]
    assert wrong == []


def test_generated_pairs(items: dict[str, ds.Item], pairs: list[Pair]) -> None:
    false_positives = [p for p in pairs if not p.equivalent and accepted(items[p.id], p.candidate)]
    assert false_positives == []
    equivalent = [p for p in pairs if p.equivalent]
    missed = [p for p in equivalent if not accepted(items[p.id], p.candidate)]
    assert len(missed) <= 0.01 * len(equivalent), missed
