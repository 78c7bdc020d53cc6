"""Multiple-choice grading (MMLU-Redux)."""

from __future__ import annotations

from hieramas.tasks.answers import extract_choice
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.types import Grade

__all__ = ["grade_mcq"]


def grade_mcq(item: Item, text: str) -> Grade:
    """Compare the letter read from ``text`` (see :func:`extract_choice`) with the gold letter."""
    letter = extract_choice(text, item.choices)
    if letter is None:
        return Grade("unparseable", None, item.answer, "no choice found")
    return Grade("correct" if letter == item.answer else "wrong", letter, item.answer, "letter")
