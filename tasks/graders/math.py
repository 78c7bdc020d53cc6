"""MATH grading: read the final answer, then decide equivalence with the gold answer.

Decision ladder, cheapest first (``Grade.detail`` names the rung used):
``string`` (equal canonical strings, :func:`normalize_math`), ``numeric``
(both sides evaluate to numbers, :mod:`hieramas.tasks.mathvalue`: rationals
exactly, irrational values to a precision that grows with the exact numbers
in them; or shown different at random rational points when they have
variables), ``sympy``
(symbolic simplification in a worker process under a time limit), and
``numeric-fallback`` (sympy timed out; agreement at 6 random points decides).
Tuples are compared in order, bare lists and ``\\{...\\}`` sets in any
order, intervals with their brackets, matrices cell by cell.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.sympy_worker import SympyChecker
from hieramas.tasks.graders.types import Grade
from hieramas.tasks.mathexpr import ExprError, free_symbols, to_expr
from hieramas.tasks.mathtext import (
    extract_math_answer,
    normalize_math,
    normalize_with_unit,
    parse_number,
    split_top_level,
)
from hieramas.tasks.mathvalue import Value, evaluate

__all__ = ["MathVerdict", "grade_math", "math_equivalent", "set_sympy_checker"]


@dataclass(frozen=True, slots=True)
class MathVerdict:
    """Equivalence of two answers and the rung of the ladder that decided it."""

    equal: bool
    method: str  # "string" | "numeric" | "sympy" | "numeric-fallback" | "unit"


_checker: SympyChecker | None = None


def set_sympy_checker(checker: SympyChecker | None) -> None:
    """Use ``checker`` for symbolic fallbacks (None: a default one, started on demand)."""
    global _checker
    _checker = checker


def _sympy() -> SympyChecker:
    global _checker
    if _checker is None:
        _checker = SympyChecker()
    return _checker


_POINTS = 6
_RNG_SEED = 20240917


def _point(rng: random.Random) -> Fraction:
    """A random rational in [1/2, 5/2]: exact arithmetic at it, away from 0 and 1."""
    return Fraction(rng.randint(500, 2500), 1000) + Fraction(1, rng.randint(1001, 9999))


def _scalar(a: str, b: str, used: list[str]) -> bool:
    if a == b:
        return True
    fa, fb = parse_number(a), parse_number(b)
    if fa is not None and fb is not None:
        return fa == fb
    try:
        ea, eb = to_expr(a), to_expr(b)
    except ExprError:
        return False  # outside the expression language: the canonical strings decide
    equation = "=" in a and "=" in b
    if ("=" in a) != ("=" in b):
        return False
    symbols = sorted(set(free_symbols(ea)) | set(free_symbols(eb)))
    if "oo" in ea or "oo" in eb:
        return False
    if not symbols:
        try:
            values = evaluate([ea, eb])
        except ExprError:
            return _symbolic(ea, eb, equation, used, numeric_guess=False)
        used.append("numeric")
        return values.equal(*values.items)
    # random points: a difference at any point settles "not equal" without sympy
    rng = random.Random(_RNG_SEED)
    ratio: Value | None = None
    agree = 0
    for _ in range(_POINTS):
        env = {s: _point(rng) for s in symbols}
        try:
            values = evaluate([ea, eb], env)
        except ExprError:
            continue
        va, vb = values.items
        agree += 1
        if equation:  # equivalent equations: lhs-rhs of one is a non-zero multiple of the other
            if values.is_zero(vb) or values.is_zero(va):
                if not (values.is_zero(va) and values.is_zero(vb)):
                    used.append("numeric")
                    return False
                continue
            r = values.ratio(va, vb)
            if ratio is None:
                ratio = r
            elif not values.equal(r, ratio):
                used.append("numeric")
                return False
        elif not values.equal(va, vb):
            used.append("numeric")
            return False
    return _symbolic(ea, eb, equation, used, numeric_guess=agree >= 3)


def _symbolic(ea: str, eb: str, equation: bool, used: list[str], numeric_guess: bool) -> bool:
    verdict = _sympy().equal(ea, eb, equation=equation)
    if verdict is None:
        used.append("numeric-fallback")
        return numeric_guess
    used.append("sympy")
    return verdict


def _unordered(xs: list[str], ys: list[str], used: list[str]) -> bool:
    if len(xs) != len(ys):
        return False
    remaining = list(ys)
    for x in xs:
        for i, y in enumerate(remaining):
            if _equivalent(x, y, used):
                del remaining[i]
                break
        else:
            return False
    return True


def _unbrace(s: str) -> str:
    return s[2:-2] if s.startswith("\\{") and s.endswith("\\}") else s


def _bracketed(s: str) -> bool:
    return len(s) >= 2 and s[0] in "([" and s[-1] in ")]"


def _equivalent(a: str, b: str, used: list[str]) -> bool:
    """Equivalence of two canonical strings (from :func:`normalize_math`)."""
    if a == b:
        return True
    if a.startswith("\\matrix{") or b.startswith("\\matrix{"):
        if not (a.startswith("\\matrix{") and b.startswith("\\matrix{")):
            return False
        rows_a = [r.split(",") for r in a[8:-1].split(";")]
        rows_b = [r.split(",") for r in b[8:-1].split(";")]
        if [len(r) for r in rows_a] != [len(r) for r in rows_b]:
            return False
        return all(
            _equivalent(x, y, used)
            for ra, rb in zip(rows_a, rows_b, strict=True)
            for x, y in zip(ra, rb, strict=True)
        )
    if "\\cup" in a or "\\cup" in b:
        pa, pb = a.split("\\cup"), b.split("\\cup")
        return _unordered(pa, pb, used)
    if a.startswith("\\{") or b.startswith("\\{"):
        return _unordered(split_top_level(_unbrace(a)), split_top_level(_unbrace(b)), used)
    if _bracketed(a) and _bracketed(b):
        ia, ib = split_top_level(a[1:-1]), split_top_level(b[1:-1])
        if len(ia) > 1 or len(ib) > 1:
            if a[0] + a[-1] != b[0] + b[-1] or len(ia) != len(ib):
                return False
            return all(_equivalent(x, y, used) for x, y in zip(ia, ib, strict=True))
    la, lb = split_top_level(a), split_top_level(b)
    if len(la) > 1 or len(lb) > 1:
        return _unordered(la, lb, used)
    return _scalar(a, b, used)


def math_equivalent(predicted: str, gold: str) -> MathVerdict:
    """Whether two LaTeX answers are equivalent (see the module docstring)."""
    (na, unit_a), (nb, unit_b) = normalize_with_unit(predicted), normalize_with_unit(gold)
    if unit_a is not None and unit_b is not None and unit_a != unit_b:
        return MathVerdict(False, "unit")  # units may be left out, not changed
    if na == nb:
        return MathVerdict(True, "string")
    if not na or not nb:
        return MathVerdict(False, "string")
    used: list[str] = []
    equal = _equivalent(na, nb, used)
    method = "string"
    for rung in ("numeric-fallback", "sympy", "numeric"):
        if rung in used:
            method = rung
            break
    return MathVerdict(equal, method)


def grade_math(item: Item, text: str) -> Grade:
    """Grade a reply to a MATH item (last ``\\boxed{}`` or "The answer is ...")."""
    raw = extract_math_answer(text)
    if raw is None or not normalize_math(raw):
        return Grade("unparseable", None, item.answer, "no final answer")
    verdict = math_equivalent(raw, item.answer)
    return Grade("correct" if verdict.equal else "wrong", raw, item.answer, verdict.method)
