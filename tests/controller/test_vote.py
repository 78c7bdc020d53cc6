"""Top-k with a vote: the most common answer of the k best DAGs' runs, ties to the best-ranked,
failed runs without a vote; cost summed, latency the slowest run's."""

from __future__ import annotations

import pytest

from hieramas.controller.vote import combine_votes, vote


def _run(answer: str | None, cost: float = 1.0, latency: float = 1.0, status: str = "ok"):  # type: ignore[no-untyped-def]
    return {"status": status, "answer": answer, "text": f"text {answer}", "cost_usd": cost,
            "latency_s": latency}  # fmt: skip


def test_the_most_common_answer_wins_even_against_the_best_ranked_dag() -> None:
    assert vote([_run("A"), _run("B"), _run("B")]) == 1
    voted = combine_votes([_run("A", 0.5, 2.0), _run("B", 0.25, 3.0), _run("B", 0.25, 1.0)])
    assert voted["answer"] == "B" and voted["text"] == "text B"
    assert voted["cost_usd"] == pytest.approx(1.0) and voted["latency_s"] == 3.0
    assert voted["voters"] == 3 and voted["winner_rank"] == 2


def test_a_tie_goes_to_the_best_ranked_and_failed_runs_have_no_vote() -> None:
    assert vote([_run("A"), _run("B")]) == 0
    assert vote([_run("C", status="timeout"), _run("B"), _run("A")]) == 1
    assert vote([_run(None), _run(" "), _run("A")]) == 2
    assert vote([_run("C", status="error"), _run("C", status="error"), _run("A")]) == 2


def test_no_answer_at_all_keeps_the_best_ranked_runs_error() -> None:
    failed = [_run(None, status="timeout"), _run(None, status="error")]
    assert vote(failed) is None
    voted = combine_votes(failed)
    assert voted["status"] == "timeout" and voted["winner_rank"] is None
    with pytest.raises(ValueError):
        combine_votes([])
