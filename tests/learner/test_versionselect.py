"""Which evaluated version a run keeps, and which validation items it evaluates on."""

from __future__ import annotations

from typing import Any

import pytest

from hieramas.learner.trainrun import spread
from hieramas.learner.versionselect import choose, outcome_string, sign_test_p


def _row(version: int, correct: str, cost: float) -> dict[str, Any]:
    return {
        "version": version,
        "accuracy": correct.count("1") / len(correct),
        "cost_per_query_usd": cost,
        "correct": correct,
    }


def test_the_sign_test_is_exact_and_one_sided() -> None:
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(3, 0) == pytest.approx(1 / 8)
    assert sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert sign_test_p(2, 2) == pytest.approx(11 / 16)
    assert outcome_string([True, False, True]) == "101"


def test_best_keeps_the_most_accurate_then_the_cheapest_and_ties_stay_earlier() -> None:
    rows = [_row(1, "1110", 0.5), _row(2, "1111", 0.9), _row(3, "1111", 0.4), _row(4, "1111", 0.4)]
    assert choose(rows, "best") == rows[2]
    assert choose([], "best") is None


def test_paired_keeps_the_cheapest_version_not_significantly_below_the_most_accurate() -> None:
    n = 40
    top = _row(1, "1" * n, 0.010)
    close = _row(2, "0" * 2 + "1" * (n - 2), 0.004)  # 2 items worse: p = 1/4, kept
    far = _row(3, "0" * 6 + "1" * (n - 6), 0.001)  # 6 items worse: p = 1/64, refused
    assert choose([top, close, far], "paired") == close
    assert choose([top, close, far], "best") == top
    # disagreements both ways count: 6 lost but 4 won is no evidence of being worse
    mixed = _row(4, "0" * 6 + "1" * (n - 6), 0.0005)
    top2 = _row(5, "1" * 6 + "0" * 4 + "1" * (n - 10), 0.010)
    assert choose([top2, mixed], "paired") == mixed
    # rows from before outcomes were recorded fall back to the best row
    old = [{k: v for k, v in r.items() if k != "correct"} for r in (top, close)]
    assert choose(old, "paired") == old[0]


def test_spread_covers_the_whole_split_evenly() -> None:
    items = list(range(10))
    assert spread(items, 5) == [0, 2, 4, 6, 8]  # type: ignore[arg-type]
    assert spread(items, 20) == items  # type: ignore[arg-type]
    assert spread(items, 3) == [0, 3, 6]  # type: ignore[arg-type]
