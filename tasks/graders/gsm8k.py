"""GSM8K grading: the final number, compared numerically."""

from __future__ import annotations

from fractions import Fraction

from hieramas.tasks.answers import extract_number
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.types import Grade

__all__ = ["grade_gsm8k", "numbers_equal"]


def _value(key: str) -> Fraction:
    if "/" in key:
        num, den = key.split("/", 1)
        return Fraction(int(num), int(den))
    return Fraction(key)


def numbers_equal(a: str, b: str) -> bool:
    """Exact numeric equality of two canonical number strings (``"2.50"`` == ``"5/2"``)."""
    try:
        return _value(a) == _value(b)
    except (ValueError, ZeroDivisionError):
        return False


def grade_gsm8k(item: Item, text: str) -> Grade:
    """Grade a reply to a GSM8K item by its final number."""
    number = extract_number(text)
    if number is None:
        return Grade("unparseable", None, item.answer, "no number found")
    ok = numbers_equal(number, item.answer)
    return Grade("correct" if ok else "wrong", number, item.answer, "numeric")
