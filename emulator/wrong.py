"""Plausible wrong answers, fixed per item.

Each item gets a short list of wrong answers (a wrong option, a perturbed
LaTeX answer, a nearby number) with fixed attractiveness weights, so that
models that get an item wrong often make the *same* mistake.  Candidates are
checked to differ from the gold answer under the canonical answer keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

from hieramas.emulator.hashing import normal, uniform
from hieramas.tasks.answers import canonical_number
from hieramas.tasks.mathtext import normalize_math

__all__ = ["WrongAnswers", "gsm8k_wrong", "math_wrong", "mcq_wrong", "pick_weighted"]

LETTERS = "ABCD"


def pick_weighted(options: Sequence[str], weights: Sequence[float], u: float) -> str:
    """The option at cumulative weight ``u · total`` (``u`` uniform in [0, 1))."""
    total = sum(weights)
    acc = 0.0
    for option, w in zip(options, weights, strict=True):
        acc += w
        if u * total < acc:
            return option
    return options[-1]


def mcq_wrong(gold: str, n_choices: int = 4) -> list[str]:
    """All wrong letters."""
    return [letter for letter in LETTERS[: max(n_choices, 2)] if letter != gold]


def _fmt_fraction(value: Fraction) -> str:
    key = canonical_number(f"{value.numerator}/{value.denominator}")
    return key if key is not None else str(value)


def gsm8k_wrong(gold: str, salt: str, item_id: str, limit: int) -> list[str]:
    """Nearby numbers: off by one or two, doubled, halved, off by ten, a dropped step."""
    try:
        g = Fraction(gold)
    except (ValueError, ZeroDivisionError):
        return [gold + "1"]
    steps: list[Fraction] = [
        g + 1,
        g - 1,
        g + 2,
        g - 2,
        g * 2,
        g / 2,
        g + 10,
        g - 10,
        g * 10,
        g * Fraction(3, 2),
    ]
    out: list[str] = []
    for value in steps:
        if value == g or (g >= 0 > value):
            continue
        if g.denominator == 1 and value.denominator != 1:
            continue
        text = _fmt_fraction(value)
        if text not in out:
            out.append(text)
    out.sort(key=lambda s: uniform(salt, "gsm8k-wrong", item_id, s))
    return out[:limit]


_INT = re.compile(r"(?<![\w.])\d+(?![\d.])")


def _number_edits(gold: str) -> list[str]:
    out: list[str] = []
    spans = list(_INT.finditer(gold))
    for m in spans[:3] + spans[-1:]:
        n = int(m.group(0))
        for new in (n + 1, n - 1 if n > 0 else n + 2, 2 * n if n > 1 else n + 3):
            out.append(gold[: m.start()] + str(new) + gold[m.end() :])
    return out


def _structural_edits(gold: str) -> list[str]:
    out: list[str] = []
    s = gold.strip()
    if s.startswith("-"):
        out.append(s[1:].strip())
    elif re.match(r"\d|\\[dt]?frac|\\sqrt|\\pi", s):
        out.append("-" + s)
    frac = re.search(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", s)
    if frac:
        out.append(
            s[: frac.start()] + f"\\frac{{{frac.group(2)}}}{{{frac.group(1)}}}" + s[frac.end() :]
        )
    depth = 0
    cut = -1
    for i, ch in enumerate(s):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch in "+-" and depth == 0 and i > 0:
            cut = i
    if cut > 0:
        out.append(s[:cut].strip())
    if "\\sqrt" in s:
        out.append(re.sub(r"(?<![\w}])\\sqrt\{([^{}]*)\}", r"\1", s, count=1))
    if "\\pi" in s:
        out.append(s.replace("\\pi", "2\\pi", 1))
    return out


def math_wrong(
    gold: str,
    salt: str,
    item_id: str,
    limit: int,
    *,
    fallback: Sequence[str] = (),
    differs: Callable[[str], bool] | None = None,
) -> list[str]:
    """Perturbed LaTeX answers (±1, ×2, a sign, a flipped fraction, a dropped term...).

    ``fallback`` (e.g. other items' answers) is used when the gold answer has
    nothing to perturb; ``differs`` is an extra check that a candidate is really wrong.
    """
    keys: set[str] = {normalize_math(gold)}

    def keep(cands: Sequence[str]) -> list[str]:
        kept: list[str] = []
        for cand in cands:
            cand = cand.strip()
            key = normalize_math(cand) if cand else ""
            if not key or key in keys or (differs is not None and not differs(cand)):
                continue
            keys.add(key)
            kept.append(cand)
        kept.sort(key=lambda s: uniform(salt, "math-wrong", item_id, s))
        return kept

    out = keep([*_number_edits(gold), *_structural_edits(gold)])[:limit]
    if len(out) < limit:
        out += keep(fallback)[: limit - len(out)]
    return out


class WrongAnswers:
    """Fixed attractiveness weights for an item's wrong answers."""

    def __init__(self, salt: str, concentration: float) -> None:
        self._salt = salt
        self._conc = concentration

    def weights(self, item_id: str, options: Sequence[str]) -> list[float]:
        """Per-item log-normal weights of ``options`` (same for every model and seed)."""
        return [
            math.exp(self._conc * normal(self._salt, "attract", item_id, opt)) for opt in options
        ]

    def pick(self, item_id: str, options: Sequence[str], u: float) -> str:
        """One wrong option, drawn with the item's attractiveness weights."""
        return pick_weighted(options, self.weights(item_id, options), u)
