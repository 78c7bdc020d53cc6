"""Which evaluated policy version a training run keeps.

Every evaluation answers the same validation items, so two versions can be compared
item by item (a paired comparison, far more sensitive than two separate intervals).
An evaluation row carries ``correct``: one character per validation item, in item
order, ``1`` for a correct answer and ``0`` otherwise.

Rules (``hieramas train --select``):

- ``best``: the highest validation accuracy, then the lowest cost, ties to the
  earlier version.  On a few hundred items several versions often differ by a few
  items, and the maximum of noisy scores is biased upwards (it tends to pick a lucky
  version, not a better one).
- ``paired``: among the versions whose accuracy is **not significantly below** the
  most accurate one, the cheapest.  "Significantly below" is a one-sided exact
  McNemar test on the items where the two disagree, at level ``level``: with ``b``
  items only the most accurate version solved and ``c`` only the other did, the
  other is worse if ``P(Bin(b + c, 1/2) ≥ b) < level``.  A row without ``correct``
  (an evaluation from before it was recorded) is compared by ``best`` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["SELECT_RULES", "SelectRule", "choose", "outcome_string", "sign_test_p"]

SelectRule = Literal["best", "paired"]
SELECT_RULES: tuple[SelectRule, ...] = ("best", "paired")


def outcome_string(correct: Sequence[bool]) -> str:
    """``correct`` as the ``1``/``0`` string an evaluation row stores."""
    return "".join("1" if c else "0" for c in correct)


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: ``P(Bin(wins + losses, 1/2) ≥ wins)``."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(wins, n + 1))
    return float(tail / 2**n)


def _key(row: Mapping[str, Any]) -> tuple[float, float]:
    return (float(row["accuracy"]), -float(row["cost_per_query_usd"]))


def _discordant(best: str, other: str) -> tuple[int, int]:
    """Items only ``best`` solved, items only ``other`` solved."""
    b = sum(x == "1" and y == "0" for x, y in zip(best, other, strict=True))
    c = sum(x == "0" and y == "1" for x, y in zip(best, other, strict=True))
    return b, c


def choose(
    evals: Sequence[Mapping[str, Any]], rule: SelectRule = "best", *, level: float = 0.05
) -> Mapping[str, Any] | None:
    """The evaluation row of the version to keep (``None`` if there is none)."""
    if not evals:
        return None
    best = evals[0]
    for row in evals[1:]:  # strictly better only: ties stay with the earlier version
        if _key(row) > _key(best):
            best = row
    if rule == "best":
        return best
    reference = best.get("correct")
    if not isinstance(reference, str):
        return best
    keep = best
    for row in evals:
        other = row.get("correct")
        if not isinstance(other, str) or len(other) != len(reference):
            continue
        if sign_test_p(*_discordant(reference, other)) < level:
            continue  # significantly below the most accurate version
        cost, kept_cost = float(row["cost_per_query_usd"]), float(keep["cost_per_query_usd"])
        if cost < kept_cost:
            keep = row
    return keep
