"""What a call answers: solo attempt, herding on predecessors, or synthesis of proposals.

Pure decision logic, no text: given the solo success probability, the
candidate answers found in the prompt and the model's traits, decide whether
the reply is correct and which answer it carries.

- ``solo``: correct with probability ``p``.
- ``herd`` (a proposer or debater that sees other agents' answers): with
  probability ``w`` (susceptibility) adopt the majority answer among them,
  right or wrong; otherwise attempt solo.
- ``synth`` (synthesizer, decision node, aggregator): if a correct answer is
  among the candidates, pick it with probability ``s + (1 − s) · share_correct``,
  else return the most common wrong candidate; if none is correct, solve the
  item itself with probability ``r · p``, else return the plurality candidate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Candidate", "Decision", "Rule", "decide", "plurality"]

Rule = Literal["solo", "herd", "synth"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An answer found in the prompt: its canonical key, its raw text and whether it is right."""

    key: str
    raw: str
    correct: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one call.

    ``answer`` is the candidate adopted (``None``: the model's own answer, the
    gold one if ``correct`` else one of its own plausible wrong answers).
    """

    correct: bool
    answer: Candidate | None
    how: Literal["solo", "herd", "pick", "self", "plurality"]


def plurality(cands: Sequence[Candidate]) -> Candidate:
    """The most common answer (ties: the one seen first)."""
    counts = Counter(c.key for c in cands)
    best = max(counts.values())
    return next(c for c in cands if counts[c.key] == best)


def decide(
    rule: Rule,
    p_solo: float,
    candidates: Sequence[Candidate],
    *,
    susceptibility: float,
    synthesis_skill: float,
    self_solve_factor: float,
    u: Callable[[str], float],
) -> Decision:
    """Decide one call; ``u(purpose)`` gives the call's uniform draw for each purpose."""
    if rule == "herd" and candidates and u("herd") < susceptibility:
        top = plurality(candidates)
        return Decision(correct=top.correct, answer=top, how="herd")
    if rule == "synth" and candidates:
        right = [c for c in candidates if c.correct]
        wrong = [c for c in candidates if not c.correct]
        if right:
            share = len(right) / len(candidates)
            if u("pick") < synthesis_skill + (1.0 - synthesis_skill) * share:
                return Decision(correct=True, answer=right[0], how="pick")
            return Decision(correct=False, answer=plurality(wrong), how="plurality")
        if u("self") < self_solve_factor * p_solo:
            return Decision(correct=True, answer=None, how="self")
        return Decision(correct=False, answer=plurality(wrong), how="plurality")
    return Decision(correct=u("solo") < p_solo, answer=None, how="solo")
