"""The result record every grader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Grade", "GradeOutcome"]

GradeOutcome = Literal["correct", "wrong", "unparseable"]


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one reply.

    ``predicted`` is the answer read from the reply (None when unparseable);
    ``detail`` says how it was decided (e.g. ``"sympy"``, a sandbox outcome).
    """

    outcome: GradeOutcome
    predicted: str | None
    gold: str
    detail: str = ""

    @property
    def correct(self) -> bool:
        """Whether the reply is right."""
        return self.outcome == "correct"
