"""Labelled (gold, candidate) pairs for checking MATH graders, generated from gold answers.

Every candidate is a rewriting of one gold answer whose label holds by construction:
``equivalent`` rewritings change only the form (``\\frac{p}{q}`` as ``p/q``, an exact
decimal, a mixed number; reordered terms or solutions; ``\\left(``; unicode signs; a unit or
``x =`` added where the answer is a plain number; ...); ``near misses`` change the value by
an exact, non-zero amount (off by one, a sign, swapped interval ends, another unit, a tiny
``10^{-12}`` or a ``1/2^{40}`` step, a mixed number read digit by digit, a variable that
looks like a unit, an extra variable).  Transformations apply only to golds of the form they
understand, so labels never depend on a grader.  Deterministic for a seed.

    from hieramas.tasks.mathpairs import generate
    pairs = generate(datasets.load("math500"), seed=0)
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from hieramas.tasks.datasets import Item

__all__ = ["Pair", "generate", "pairs_for"]


@dataclass(frozen=True, slots=True)
class Pair:
    """A candidate answer for ``gold``, with its label and the rewriting that made it."""

    id: str
    gold: str
    candidate: str
    equivalent: bool
    kind: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_INT = re.compile(r"-?\d+")
_GROUPED = re.compile(r"-?\d{1,3}(?:,(?:\\!)?\s*\d{3})+")
_DECIMAL = re.compile(r"-?\d*\.\d+")
_FRAC = re.compile(r"(-?)\\[dt]?frac\s*(?:\{(-?\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))")
_SQRT = re.compile(r"(-?)(\d*)\s*\\sqrt\s*(?:\{(\d+)\}|(\d))")
_PI = re.compile(r"(-?\d*)\s*\\pi")
_DEGREES = re.compile(r"(\d+)\^\\circ")
_CHOICE = re.compile(r"\\text\{\(([A-E])\)\}")
_UNIT_GOLD = re.compile(r"(\d+(?:\.\d+)?)\s*\\(?:mbox|text)\{\s*(inches|cm|cents)\}(\^2)?")
_BASE = re.compile(r"(\d+)_\{?(\d+)\}?")
_COMPLEX = re.compile(r"(-?\d+)\s*([+-])\s*(\d*)i")
# plain-number problems that name a unit: the unit may be written after the number
_PROBLEM_UNITS = {
    "centimeter": "cm",
    "inch": "inches",
    "feet": "feet",
    "foot": "feet",
    "meter": "meters",
    "dollar": "dollars",
    "cent": "cents",
    "square unit": "square units",
}
_OTHER_UNIT = {"inches": "feet", "cm": "m", "cents": "dollars", "feet": "inches"}
_OTHER_UNIT.update({"meters": "cm", "dollars": "cents", "degrees": "radians"})
_OTHER_UNIT.update({"seconds": "minutes", "minutes": "hours", "square units": "cm"})


def _frac_tex(q: Fraction) -> str:
    sign = "-" if q < 0 else ""
    q = abs(q)
    return (
        f"{sign}\\frac{{{q.numerator}}}{{{q.denominator}}}" if q.denominator != 1 else f"{sign}{q}"
    )


def _terminating(q: Fraction) -> str | None:
    """The exact decimal of ``q``, if it has one."""
    d = q.denominator
    twos = fives = 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    if d != 1:
        return None
    places = max(twos, fives)
    text = str(int(abs(q) * 10**places)).rjust(places + 1, "0")
    body = f"{text[:-places]}.{text[-places:]}" if places else text
    return ("-" if q < 0 else "") + body


def _problem_variable(problem: str) -> str | None:
    """The unknown a problem names: ``x`` if it has one, else its first one-letter variable."""
    names = re.findall(r"\$([a-z])\$", problem)
    return "x" if "x" in names else names[0] if names else None


def _problem_unit(problem: str) -> str | None:
    low = problem.lower()
    for word, unit in _PROBLEM_UNITS.items():
        if re.search(rf"\b{word}s?\b", low):
            return unit
    return None


def _mixed_trap(n: int) -> str | None:
    """``a b/d`` whose digits, run together, read ``n`` (``4 2/3`` for 14); its value is not n."""
    for d in (3, 7, 2, 9):
        digits = str(n * d)
        for cut in range(1, len(digits)):
            head, tail = digits[:cut], digits[cut:]
            if tail.startswith("0") or int(tail) >= d:
                continue  # "4 2/3": a proper fraction after the whole part
            if int(head) + Fraction(int(tail), d) != n:
                return f"{head} {tail}/{d}"
    return None


def _number_pairs(n: Fraction, gold: str, problem: str, rng: random.Random) -> Iterator[Pair]:
    """Rewritings of a gold that is one rational number ``n``."""
    eq: list[tuple[str, str]] = []
    ne: list[tuple[str, str]] = []
    big = 2**40
    if n.denominator == 1:
        k = int(n)
        eq.append(("fraction", f"\\frac{{{2 * k}}}{{2}}"))
        eq.append(("decimal", f"{k}.0"))
        eq.append(("large-exact", f"\\frac{{{k}\\cdot 2^{{40}}}}{{2^{{40}}}}"))
        if abs(k) >= 1000:
            grouped = f"{abs(k):,}".replace(",", ",\\!")
            eq.append(("thousands", ("-" if k < 0 else "") + grouped))
        eq.append(("plain-integer", str(k)))
        trap = _mixed_trap(k) if k > 9 else None
        if trap:
            ne.append(("mixed-number-trap", trap))
        ne.append(("unit-letter-trap", f"{k - 2}+2s"))
        ne.append(("extra-variable", f"{k}+x" if rng.random() < 0.5 or k == 0 else f"{k}x"))
    else:
        p, q = n.numerator, n.denominator
        eq.append(("slash", f"{p}/{q}"))
        eq.append(("dfrac", _frac_tex(n).replace("\\frac", "\\dfrac")))
        eq.append(("unreduced", f"{'-' if p < 0 else ''}\\frac{{{3 * abs(p)}}}{{{3 * q}}}"))
        exact = _terminating(n)
        if exact:
            eq.append(("decimal", exact))
        else:
            ne.append(("decimal-approximation", f"{float(n):.4f}"))
        if abs(n) > 1:
            whole, rest = divmod(abs(p), q)
            sign = "-" if n < 0 else ""
            eq.append(("mixed-number", f"{sign}{whole}\\frac{{{rest}}}{{{q}}}"))
            eq.append(("mixed-number-plain", f"{sign}{whole} {rest}/{q}"))
        if abs(p) != q:
            ne.append(("reciprocal", _frac_tex(1 / n)))
        ne.append(("numerator-off-by-one", _frac_tex(Fraction(p + 1, q))))
    if n < 0:
        eq.append(("unicode-minus", "\u2212" + str(gold).lstrip().removeprefix("-")))
    unit = _problem_unit(problem)
    if unit:
        eq.append(("unit-text", f"{gold}\\text{{ {unit}}}"))
        eq.append(("unit-word", f"{gold} {unit}"))
    var = _problem_variable(problem)
    if var:
        eq.append(("x=-prefix", f"{var} = {gold}"))
    plain = _frac_tex(n)
    ne.append(("off-by-one", _frac_tex(n + 1)))
    ne.append(("off-by-one", _frac_tex(n - 1)))
    if n != 0:
        ne.append(("wrong-sign", _frac_tex(-n)))
    ne.append(("epsilon", f"{plain} + 10^{{-12}}"))
    ne.append(("large-near-miss", f"\\frac{{{_frac_tex(n * big)} + 1}}{{2^{{40}}}}"))
    yield from _emit(gold, eq, ne)


def _emit(
    gold: str, eq: Iterable[tuple[str, str]], ne: Iterable[tuple[str, str]]
) -> Iterator[Pair]:
    for kind, cand in eq:
        yield Pair("", gold, cand, True, kind)
    for kind, cand in ne:
        yield Pair("", gold, cand, False, kind)


def _split_terms(s: str) -> list[str] | None:
    """Top-level signed terms of ``s`` (``x^2 - 3x + 1`` -> ``x^2``, ``-3x``, ``+1``)."""
    terms: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(s):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch in "+-" and depth == 0 and i > 0 and s[i - 1] not in "^_{(" and s[:i].strip():
            terms.append(s[start:i].strip())
            start = i
    terms.append(s[start:].strip())
    return terms if len(terms) >= 2 and all(terms) else None


def _reversed_terms(s: str) -> str | None:
    terms = _split_terms(s)
    if terms is None:
        return None
    signed = [t if t[0] in "+-" else "+" + t for t in terms]
    out = " ".join(t[0] + " " + t[1:].strip() for t in reversed(signed)).strip()
    return out[2:] if out.startswith("+ ") else "-" + out[2:] if out.startswith("- ") else out


def _interval_pairs(gold: str) -> Iterator[Pair]:
    m = re.fullmatch(r"([\(\[])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\)\]])", gold)
    if not m:
        return
    left, a, b, right = m.groups()
    inf = "\\infty" in gold
    eq = [
        ("left-right", f"\\left{left} {a}, {b} \\right{right}"),
        ("spaces", f"{left}{a} , {b}{right}"),
    ]
    if inf:
        eq.append(("x-in-interval", f"x \\in {gold}"))
    ne = [("swapped-ends", f"{left}{b}, {a}{right}")] if a != b else []
    flip = {"(": "[", "[": "(", ")": "]", "]": ")"}
    if not a.startswith("-\\infty"):
        ne.append(("bracket-changed", f"{flip[left]}{a}, {b}{right}"))
    elif not b.endswith("\\infty"):
        ne.append(("bracket-changed", f"{left}{a}, {b}{flip[right]}"))
    if inf and not a.startswith("-"):
        ne.append(("wrong-sign", f"{left}-{a}, {b}{right}"))
    yield from _emit(gold, eq, ne)


def _union_pairs(gold: str) -> Iterator[Pair]:
    parts = [p.strip() for p in gold.split("\\cup")]
    if len(parts) != 2:
        return
    eq = [("union-reordered", f"{parts[1]} \\cup {parts[0]}")]
    first = parts[0]
    ne = []
    if first.endswith(")") and not first[:-1].rstrip().endswith("\\infty"):
        ne.append(("bracket-changed", f"{first[:-1]}] \\cup {parts[1]}"))
    yield from _emit(gold, eq, ne)


def _equation_pairs(gold: str) -> Iterator[Pair]:
    g = gold.strip()
    m = re.fullmatch(r"([a-z])\s*=\s*(-?\d+)", g)
    if m:
        value = int(m.group(2))
        yield from _emit(
            gold, [("lhs-dropped", str(value))], [("off-by-one", f"{m.group(1)}={value + 1}")]
        )
        return
    m = re.fullmatch(r"(.+?)\s*=\s*0", g)
    terms = _split_terms(m.group(1)) if m else None
    if m is None or terms is None:
        return
    negated = " ".join(
        ("+ " + t[1:].strip()) if t.startswith("-") else ("- " + t.lstrip("+").strip())
        for t in terms
    ).removeprefix("+ ")
    yield from _emit(
        gold, [("negated-equation", f"{negated} = 0")], [("plus-one", f"{m.group(1)} + 1 = 0")]
    )


def _matrix_pairs(gold: str) -> Iterator[Pair]:
    m = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", gold.strip(), re.DOTALL)
    if not m:
        return
    body = m.group(1).strip()
    first = re.match(r"(-?)(\d+(?:/\d+)?)", body)
    eq = [("bmatrix", gold.replace("pmatrix", "bmatrix"))]
    ne = []
    if first and first.group(2) != "0":
        negated = ("" if first.group(1) else "-") + first.group(2) + body[first.end() :]
        ne.append(("wrong-sign", f"\\begin{{pmatrix}} {negated} \\end{{pmatrix}}"))
    yield from _emit(gold, eq, ne)


def _tuple_pairs(gold: str) -> Iterator[Pair]:
    m = re.fullmatch(r"\((-?\d+(?:\s*,\s*-?\d+)+)\)", gold)
    if not m:
        return
    parts = [p.strip() for p in m.group(1).split(",")]
    eq = [("left-right", "\\left( " + ", ".join(parts) + " \\right)")]
    ne: list[tuple[str, str]] = []
    if parts[0] != parts[1]:
        ne.append(("swapped-order", "(" + ",".join([parts[1], parts[0], *parts[2:]]) + ")"))
    if parts[-1] != "0":
        last = parts[-1][1:] if parts[-1].startswith("-") else "-" + parts[-1]
        ne.append(("wrong-sign", "(" + ",".join([*parts[:-1], last]) + ")"))
    ne.append(("dropped-element", "(" + ",".join(parts[:-1]) + ")"))
    yield from _emit(gold, eq, ne)


def _solution_set_pairs(gold: str, problem: str) -> Iterator[Pair]:
    parts = [p.strip() for p in gold.split(",")]
    if len(parts) < 2 or not all(_INT.fullmatch(p) for p in parts):
        return
    if "separated by commas" not in problem:
        return
    values = [int(p) for p in parts]
    var = _problem_variable(problem) or "x"
    eq = [
        ("reordered-solutions", ", ".join(reversed(parts))),
        ("x=-solutions", ", ".join(f"{var}={p}" for p in reversed(parts))),
        ("x=-solutions-or", " \\text{ or } ".join(f"{var} = {p}" for p in parts)),
    ]
    ne = [("dropped-solution", ", ".join(parts[1:]))]
    extra = max(values) + 1
    ne.append(("extra-solution", ", ".join([*parts, str(extra)])))
    flipped = [-values[0], *values[1:]]
    if sorted(flipped) != sorted(values):
        ne.append(("wrong-sign", ", ".join(map(str, flipped))))
    yield from _emit(gold, eq, ne)


def _sqrt_pairs(gold: str) -> Iterator[Pair]:
    m = _SQRT.fullmatch(gold.strip())
    if not m:
        return
    sign, coef, radicand = m.group(1), m.group(2), int(m.group(3) or m.group(4))
    k = int(coef) if coef else 1
    value = (-1 if sign else 1) * k
    if math.isqrt(radicand) ** 2 == radicand:
        return
    eq = [
        ("sqrt-absorbed", f"{sign}\\sqrt{{{k * k * radicand}}}"),
        ("unicode-root", f"{sign}{coef}\u221a{radicand}"),
        ("sqrt-times", f"{sign}\\sqrt{{{radicand}}}\\cdot {k}"),
    ]
    if sign:
        eq.append(("unicode-minus", f"\u2212{coef}\\sqrt{{{radicand}}}"))
    ne = [
        ("radicand-off-by-one", f"{sign}{coef}\\sqrt{{{radicand + 1}}}"),
        ("coefficient-off-by-one", f"{sign}{k + 1}\\sqrt{{{radicand}}}"),
        ("wrong-sign", f"{'' if sign else '-'}{coef}\\sqrt{{{radicand}}}"),
        ("decimal-approximation", f"{value * radicand**0.5:.6f}"),
        ("epsilon", f"{gold} + 10^{{-12}}"),
    ]
    yield from _emit(gold, eq, ne)


def _pi_pairs(gold: str) -> Iterator[Pair]:
    m = _PI.fullmatch(gold.strip())
    if not m:
        return
    coef = m.group(1)
    k = int(coef) if coef not in ("", "-") else (-1 if coef == "-" else 1)
    eq = [
        ("unicode-pi", f"{coef}\u03c0"),
        ("pi-first", f"\\pi \\cdot {k}"),
        ("pi-fraction", f"\\frac{{{2 * k}\\pi}}{{2}}"),
    ]
    ne = [
        ("dropped-pi", str(k)),
        ("off-by-one", f"{k + 1}\\pi"),
        ("pi-squared", f"{coef}\\pi^2"),
        ("decimal-approximation", f"{k * 3.14159265:.6f}"),
    ]
    yield from _emit(gold, eq, ne)


def _degree_pairs(gold: str) -> Iterator[Pair]:
    m = _DEGREES.fullmatch(gold.strip())
    if not m:
        return
    n = int(m.group(1))
    eq = [
        ("degrees-dropped", str(n)),
        ("degree-sign", f"{n}\u00b0"),
        ("degree-braces", f"{n}^{{\\circ}}"),
        ("degrees-word", f"{n} \\text{{ degrees}}"),
    ]
    ne = [
        ("off-by-one", f"{n + 1}^\\circ"),
        ("supplement", f"{180 - n}^\\circ") if n != 90 else ("double", f"{2 * n}^\\circ"),
        ("another-unit", f"{n} \\text{{ radians}}"),
    ]
    yield from _emit(gold, eq, ne)


def _unit_gold_pairs(gold: str) -> Iterator[Pair]:
    m = _UNIT_GOLD.fullmatch(gold.strip())
    if not m:
        return
    number, unit, square = m.group(1), m.group(2), m.group(3) or ""
    other = _OTHER_UNIT[unit]
    bump = str(Fraction(number) + 1) if "." not in number else f"{float(number) + 1:.1f}"
    eq = [
        ("unit-dropped", number),
        ("unit-text", f"{number}\\text{{ {unit}}}{square}"),
        ("unit-plain", f"{number} {'square ' if square else ''}{unit}"),
    ]
    ne = [
        ("another-unit", f"{number}\\text{{ {other}}}{square}"),
        ("off-by-one", f"{bump}\\text{{ {unit}}}{square}"),
    ]
    yield from _emit(gold, eq, ne)


def _choice_pairs(gold: str) -> Iterator[Pair]:
    m = _CHOICE.fullmatch(gold.strip())
    if not m:
        return
    letter = m.group(1)
    other = "ABCDE"[("ABCDE".index(letter) + 1) % 5]
    eq = [
        ("letter", letter),
        ("letter-parenthesised", f"({letter})"),
        ("textbf", f"\\textbf{{({letter})}}"),
    ]
    ne = [("another-choice", f"\\text{{({other})}}"), ("another-choice", other)]
    yield from _emit(gold, eq, ne)


def _complex_pairs(gold: str) -> Iterator[Pair]:
    m = _COMPLEX.fullmatch(gold.strip())
    if not m:
        return
    re_part, sign, im_part = m.group(1), m.group(2), m.group(3) or "1"
    other = "-" if sign == "+" else "+"
    eq = [
        (
            "reordered-terms",
            f"{sign}{im_part}i {'+' if not re_part.startswith('-') else ''}{re_part}".lstrip("+"),
        )
    ]
    ne = [
        ("conjugate", f"{re_part} {other} {im_part}i"),
        ("swapped-parts", f"{im_part} {sign} {re_part.lstrip('-')}i"),
    ]
    yield from _emit(gold, eq, ne)


def _base_pairs(gold: str) -> Iterator[Pair]:
    m = _BASE.fullmatch(gold.strip())
    if not m:
        return
    digits, base = m.group(1), int(m.group(2))
    bumped = str(int(digits) + 1) if not digits.endswith(str(base - 1)) else str(int(digits) - 1)
    eq = [("base-braces", f"{digits}_{{{base}}}")]
    ne = [("off-by-one", f"{bumped}_{{{base}}}"), ("base-dropped", digits)]
    yield from _emit(gold, eq, ne)


def _expression_pairs(gold: str) -> Iterator[Pair]:
    """Polynomial-like golds with variables: reordered terms, a changed term, a new variable."""
    g = gold.strip()
    if any(t in g for t in ("=", ",", "\\pm", "\\cup", "\\begin", "\\text", "_", "i")):
        return
    letters = set(re.findall(r"(?<!\\)\b[a-z]\b|(?<=\d)[a-z]", re.sub(r"\\[a-zA-Z]+", "", g)))
    if not letters:
        return
    reordered = _reversed_terms(g)
    eq = [("reordered-terms", reordered)] if reordered and reordered != g else []
    fresh = next(v for v in "yzwuv" if v not in letters)
    ne = [("extra-variable", f"{g} + {fresh}"), ("plus-one", f"{g} + 1"), ("wrong-sign", f"-({g})")]
    yield from _emit(gold, eq, ne)


def _unicode_pairs(gold: str) -> Iterator[Pair]:
    """The same answer typed with unicode signs."""
    g = gold.strip()
    if "\\begin" in g or "\\text" in g or "\\mbox" in g:
        return
    u = g.replace("-", "\u2212").replace("\\pi", "\u03c0")
    u = re.sub(r"\\sqrt\{(\d+)\}|\\sqrt(\d)", lambda m: "\u221a" + (m.group(1) or m.group(2)), u)
    if u != g:
        yield Pair("", gold, u, True, "unicode")


def _boxed_pairs(gold: str) -> Iterator[Pair]:
    """The answer inside a second ``\\boxed{}``, or after ``\\displaystyle``."""
    yield Pair("", gold, f"\\boxed{{{gold}}}", True, "boxed-wrapper")
    yield Pair("", gold, f"\\displaystyle {gold}", True, "displaystyle")


def _as_number(gold: str) -> Fraction | None:
    g = gold.strip()
    if _INT.fullmatch(g):
        return Fraction(int(g))
    if _GROUPED.fullmatch(g):
        return Fraction(int(re.sub(r"[,\\!\s]", "", g)))
    if _DECIMAL.fullmatch(g):
        return Fraction(g)
    m = _FRAC.fullmatch(g)
    if m:
        num = int(m.group(2) or m.group(3))
        den = int(m.group(4) or m.group(5))
        value = Fraction(num, den)
        return -value if m.group(1) else value
    return None


_FAMILIES: Sequence[Callable[[str], Iterator[Pair]]] = (
    _interval_pairs,
    _union_pairs,
    _equation_pairs,
    _matrix_pairs,
    _tuple_pairs,
    _sqrt_pairs,
    _pi_pairs,
    _degree_pairs,
    _unit_gold_pairs,
    _choice_pairs,
    _complex_pairs,
    _base_pairs,
    _expression_pairs,
    _unicode_pairs,
    _boxed_pairs,
)


def pairs_for(item: Item, seed: int = 0) -> list[Pair]:
    """Every labelled rewriting of ``item``'s gold answer that this module knows."""
    rng = random.Random(f"{seed}:{item.id}")
    gold = item.answer
    out: list[Pair] = []
    number = _as_number(gold)
    if number is not None:
        out.extend(_number_pairs(number, gold, item.question, rng))
    out.extend(_solution_set_pairs(gold, item.question))
    for family in _FAMILIES:
        out.extend(family(gold))
    seen: set[tuple[str, bool]] = set()
    unique = []
    for p in out:
        if p.candidate.strip() == gold.strip():
            continue  # not a rewriting
        if (p.candidate, p.equivalent) in seen:
            continue
        seen.add((p.candidate, p.equivalent))
        unique.append(Pair(item.id, gold, p.candidate, p.equivalent, p.kind))
    labels: dict[str, bool] = {}
    for p in unique:  # a candidate produced with both labels is a bug of this module
        if labels.setdefault(p.candidate, p.equivalent) != p.equivalent:
            raise AssertionError(f"contradictory labels for {p.candidate!r} of {gold!r}")
    return unique


def generate(items: Iterable[Item], seed: int = 0) -> list[Pair]:
    """Labelled pairs for every item (MATH-500 gives about 4,000), in item order."""
    return [p for item in items for p in pairs_for(item, seed)]
