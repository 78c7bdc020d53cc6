"""Deterministic graders (no LLM): multiple choice, MATH, GSM8K and HumanEval."""

from __future__ import annotations

from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.code import (
    failing_bug,
    grade_humaneval,
    grade_humaneval_sync,
    humaneval_candidate,
    humaneval_program,
    run_humaneval,
)
from hieramas.tasks.graders.gsm8k import grade_gsm8k, numbers_equal
from hieramas.tasks.graders.math import MathVerdict, grade_math, math_equivalent
from hieramas.tasks.graders.mcq import grade_mcq
from hieramas.tasks.graders.types import Grade, GradeOutcome
from hieramas.tasks.sandbox import Sandbox

__all__ = [
    "Grade",
    "GradeOutcome",
    "MathVerdict",
    "agrade",
    "failing_bug",
    "grade",
    "grade_gsm8k",
    "grade_humaneval",
    "grade_humaneval_sync",
    "grade_math",
    "grade_mcq",
    "humaneval_candidate",
    "humaneval_program",
    "math_equivalent",
    "numbers_equal",
    "run_humaneval",
]


def grade(item: Item, text: str, *, sandbox: Sandbox | None = None) -> Grade:
    """Grade ``text`` against ``item`` (blocking; HumanEval runs in a sandbox)."""
    if item.domain == "mmlu":
        return grade_mcq(item, text)
    if item.domain == "math":
        return grade_math(item, text)
    if item.domain == "gsm8k":
        return grade_gsm8k(item, text)
    if item.domain == "humaneval":
        return grade_humaneval_sync(item, text, sandbox)
    raise ValueError(f"no grader for domain {item.domain!r}")


async def agrade(item: Item, text: str, *, sandbox: Sandbox | None = None) -> Grade:
    """:func:`grade` for async callers (the code sandbox is awaited, not blocked on)."""
    if item.domain == "humaneval":
        return await grade_humaneval(item, text, sandbox or Sandbox())
    return grade(item, text)
