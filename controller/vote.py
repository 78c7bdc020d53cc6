"""Top-k with a vote: run the ``k`` best-scored DAGs of a query and vote their final answers.

The classifier's top-1 DAG is one guess; running the ``k`` best-scored candidates (each with
the same Stage-1 LLMs) and taking the most common final answer trades ``k`` times the calls
for robustness.  The vote reads only the answers the runs returned, never a grader or hidden
tests: the most common answer wins, a tie goes to the answer of the best-ranked DAG among the
tied ones, and a run that failed or gave no answer has no vote.  The result's cost is the sum
of the runs' (all were paid for) and its latency the slowest run's (they run concurrently).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["combine_votes", "vote"]


def _ballot(result: dict[str, Any]) -> str | None:
    if result.get("status") != "ok":
        return None
    answer = result.get("answer")
    text = str(answer).strip() if answer is not None else ""
    return text or None


def vote(results: Sequence[dict[str, Any]]) -> int | None:
    """The index of the winning run among ``results`` (best-ranked DAG first): the most
    common answer, ties to the best-ranked; ``None`` when no run answered."""
    ballots = [_ballot(r) for r in results]
    counts = Counter(b for b in ballots if b is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, b in enumerate(ballots) if b is not None and counts[b] == top)


def combine_votes(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One query result of ``results`` voted: the winner's answer and text (the best-ranked
    run's error when none answered), every run's cost summed, the slowest run's latency."""
    if not results:
        raise ValueError("no runs to vote")
    win = vote(results)
    chosen = dict(results[0] if win is None else results[win])
    chosen["cost_usd"] = sum(float(r.get("cost_usd") or 0.0) for r in results)
    chosen["latency_s"] = max(float(r.get("latency_s") or 0.0) for r in results)
    chosen["voters"] = len(results)
    chosen["winner_rank"] = None if win is None else win + 1
    return chosen
