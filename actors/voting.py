"""Plurality voting over texts by their extracted answers (the ``vote`` pseudo-LLM)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hieramas.actors import prompting

__all__ = ["plurality"]


def plurality(domain: str, texts: Sequence[str]) -> tuple[int, str | None]:
    """Index of the text carrying the most common parsed answer (earliest on ties) and that answer.

    Unparseable texts do not vote; with no parseable text the first text wins, answer ``None``.
    """
    answers = [prompting.extract_answer(domain, text) for text in texts]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0, None
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return answers.index(winner), winner
