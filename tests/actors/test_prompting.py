"""The runtime's proposer prompts: kept rendered for the proposers of a node, never shared."""

from __future__ import annotations

from hieramas.actors import prompting
from hieramas.tasks import prompts


def test_a_kept_prompt_is_the_rendered_one_and_each_caller_gets_its_own_copy() -> None:
    preds = [("Doctor", "I think (A)")]
    first = prompting.proposer_messages("mmlu", "Critic", "Q?", preds)
    second = prompting.proposer_messages("mmlu", "Critic", "Q?", list(preds))
    assert first == second == prompts.proposer_messages("mmlu", "Critic", "Q?", preds)
    first[0]["content"] = "changed by a client"
    first.append({"role": "user", "content": "more"})
    assert prompting.proposer_messages("mmlu", "Critic", "Q?", preds) == second
    assert second[0] is not prompting.proposer_messages("mmlu", "Critic", "Q?", preds)[0]


def test_another_role_task_or_predecessor_text_gets_its_own_prompt() -> None:
    base = prompting.proposer_messages("mmlu", "Critic", "Q?", [("Doctor", "A")])
    for other in (
        prompting.proposer_messages("mmlu", "Doctor", "Q?", [("Doctor", "A")]),
        prompting.proposer_messages("mmlu", "Critic", "Q2?", [("Doctor", "A")]),
        prompting.proposer_messages("mmlu", "Critic", "Q?", [("Doctor", "B")]),
        prompting.proposer_messages("mmlu", "Critic", "Q?", []),
    ):
        assert other != base


def test_the_kept_prompts_are_bounded() -> None:
    for i in range(3 * prompting._RENDERED_KEEP):
        prompting.proposer_messages("mmlu", "Critic", f"question {i}", [])
    assert prompting._rendered.cache_info().currsize == prompting._RENDERED_KEEP
    last = prompting.proposer_messages(
        "mmlu", "Critic", f"question {3 * prompting._RENDERED_KEEP - 1}", []
    )
    assert last == prompts.proposer_messages(
        "mmlu", "Critic", f"question {3 * prompting._RENDERED_KEEP - 1}", []
    )
