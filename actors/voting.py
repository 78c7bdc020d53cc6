"""Voting among candidate texts (the ``vote`` pseudo-LLM).

Answers that can be parsed and compared (letters, numbers, math) vote by plurality.  Code
cannot: two samples of a program never have the same text, so code candidates vote by
their *behaviour* in the sandbox (:mod:`hieramas.tasks.codevote`), which takes a while and
therefore runs on the bus loop, off the actor's thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

from hieramas.actors import prompting
from hieramas.tasks.codevote import VoteOutcome, behaviour_vote
from hieramas.tasks.sandbox import Sandbox

__all__ = ["VoteOutcome", "by_behaviour", "needs_execution", "plurality"]

_EXECUTED_DOMAINS = frozenset({"humaneval"})


def needs_execution(domain: str) -> bool:
    """Whether candidates of ``domain`` vote by running them (code) instead of by plurality."""
    return domain in _EXECUTED_DOMAINS


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


@cache
def _sandbox() -> Sandbox:
    return Sandbox(max_concurrency=2)


async def by_behaviour(task: str, texts: Sequence[str]) -> VoteOutcome:
    """The code candidate that behaves best on the task's examples (runs on the bus loop)."""
    return await behaviour_vote(task, texts, _sandbox())
