"""Replies read back correctly: recognition, answer formats, wrong answers, malformed replies."""

from __future__ import annotations

from collections import Counter

import pytest

from hieramas.emulator.engine import Engine
from hieramas.emulator.index import ItemIndex
from hieramas.emulator.wrong import gsm8k_wrong, math_wrong
from hieramas.tasks import prompts
from hieramas.tasks.answers import extract_answer
from hieramas.tasks.datasets import Item, load
from hieramas.tasks.mathtext import normalize_math
from hieramas.tasks.prompts import PromptInfo

DOMAINS = {"mmlu": "mmlu_redux", "math": "math500", "gsm8k": "gsm8k", "humaneval": "humaneval"}


@pytest.fixture(scope="module")
def items(datasets_dir: object) -> dict[str, list[Item]]:
    return {domain: load(name) for domain, name in DOMAINS.items()}


def test_items_are_recognised_in_every_kind_of_prompt(
    engine: Engine, items: dict[str, list[Item]]
) -> None:
    index = engine.index
    for domain, group in items.items():
        role = prompts.roles(domain)[-1]
        for item in group[:: max(1, len(group) // 60)]:
            variants = [
                prompts.proposer_messages(domain, role, item.question, [("Critic", "I think A.")]),
                prompts.synthesizer_messages(domain, role, item.question, ["x", "y"], []),
                prompts.decision_messages(domain, item.question, [(role, "z")]),
                prompts.single_messages(domain, item.question, cot=True),
                [{"role": "user", "content": f"Please help with this:\n{item.question}\nThanks!"}],
            ]
            for messages in variants:
                info = prompts.parse_prompt(messages)
                text = "\n".join(m["content"] for m in messages)
                found = index.find(text, task_text=info.task_text or None, domain=info.domain)
                assert found is not None and found.question == item.question, (item.id, messages)


def test_unrelated_text_matches_no_item(engine: Engine) -> None:
    assert engine.index.find("What is the capital of France? Answer briefly.") is None
    assert engine.index.find("") is None
    assert len(ItemIndex([])) == 0


def test_wrong_answers_are_really_wrong(items: dict[str, list[Item]]) -> None:
    for item in items["math"]:
        gold = normalize_math(item.answer)
        wrong = math_wrong(item.answer, "s", item.id, 4, fallback=["1", "2", "3", "4", "5"])
        assert len(wrong) == 4, item.id
        assert all(normalize_math(w) != gold for w in wrong), item.id
        assert len({normalize_math(w) for w in wrong}) == 4
    for item in items["gsm8k"][:2000]:
        wrong = gsm8k_wrong(item.answer, "s", item.id, 4)
        assert wrong and item.answer not in wrong
        assert all(extract_answer("gsm8k", f"The answer is {w}") == w for w in wrong)


def test_reply_texts_grade_as_the_emulator_decided(
    engine: Engine, items: dict[str, list[Item]]
) -> None:
    """For every domain and kind, extract_answer on the text agrees with the hidden verdict."""
    outcomes: Counter[tuple[str, str]] = Counter()
    for domain in ("mmlu", "math", "gsm8k"):
        role = prompts.roles(domain)[0]
        for n, item in enumerate(items[domain][:300]):
            kind = ("proposer", "single", "synthesizer")[n % 3]
            cands = (
                [f"So the answer is {x}." for x in ("\\boxed{1}", "\\boxed{2}")]
                if kind == "synthesizer" else []
            )  # fmt: skip
            info = PromptInfo(kind=kind, domain=domain, role=role, task_text=item.question,  # type: ignore[arg-type]
                              candidates=cands, cot=False)  # fmt: skip
            for model in ("llama-8b", "gpt-5-mini"):
                reply = engine.reply(model, info, item, context=f"ctx{n}")
                key = extract_answer(domain, reply.text, choices=item.choices)
                gold = normalize_math(item.answer) if domain == "math" else item.answer
                if reply.malformed:
                    assert key is None, reply.text
                    outcomes[(domain, "malformed")] += 1
                else:
                    assert (key == gold) == reply.correct, (item.id, reply.text[-200:])
                    outcomes[(domain, "correct" if reply.correct else "wrong")] += 1
    for domain in ("mmlu", "math", "gsm8k"):
        assert outcomes[(domain, "correct")] > 0 and outcomes[(domain, "wrong")] > 0


def test_malformed_replies_do_not_parse(engine: Engine, items: dict[str, list[Item]]) -> None:
    seen = 0
    for domain in ("mmlu", "math", "gsm8k"):
        info = PromptInfo(kind="proposer", domain=domain, role=prompts.roles(domain)[0])
        for n, item in enumerate(items[domain][:1500]):
            reply = engine.reply("llama-8b", info, item, context=f"m{n}")
            if reply.malformed:
                seen += 1
                assert extract_answer(domain, reply.text, choices=item.choices) is None
    assert seen > 50  # llama-8b: 4 % of 4500 replies
