"""HumanEval: emulated code is graded for real by the tasks sandbox.

Right replies carry the reference solution, wrong ones a mutant that was verified to fail its
tests; the sandbox must agree with the emulator's hidden verdict on every reply.
"""

from __future__ import annotations

import pytest

from hieramas.emulator.engine import Engine
from hieramas.tasks import prompts
from hieramas.tasks.datasets import Item, load
from hieramas.tasks.graders import agrade
from hieramas.tasks.prompts import PromptInfo
from hieramas.tasks.sandbox import Sandbox

ITEMS = (0, 12, 31)


@pytest.fixture(scope="module")
def code_items(datasets_dir: object) -> list[Item]:
    everything = load("humaneval")
    return [everything[i] for i in ITEMS]


@pytest.mark.slow
async def test_wrong_code_fails_and_right_code_passes_in_the_sandbox(
    engine: Engine, code_items: list[Item]
) -> None:
    sandbox = Sandbox()
    seen = {True: 0, False: 0}
    for item in code_items:
        await engine.answers.prepare(item)
        wrong = engine.answers.wrong_options(item)
        assert wrong, item.id
        fenced = [f"```python\n{code}\n```" for code in wrong]
        grades = [await agrade(item, text, sandbox=sandbox) for text in fenced]
        assert [g.outcome for g in grades] == ["wrong"] * len(wrong), item.id
        gold = await agrade(item, f"```python\n{engine.answers.gold(item)}\n```", sandbox=sandbox)
        assert gold.correct, item.id
        info = PromptInfo(kind="proposer", domain="humaneval", role="Programming Expert")
        for n in range(6):
            reply = engine.reply("llama-8b", info, item, context=f"code-{n}")
            graded = await agrade(item, reply.text, sandbox=sandbox)
            assert graded.correct == reply.correct, (item.id, reply.how, reply.text[-400:])
            if reply.correct is not None:
                seen[reply.correct] += 1
    assert seen[True] > 0 and seen[False] > 0


async def test_synthesizer_reads_code_proposals(engine: Engine, code_items: list[Item]) -> None:
    item = code_items[0]
    await engine.answers.prepare(item)
    bug = engine.answers.wrong_options(item)[0]  # type: ignore[index]
    proposals = [
        f"Here you go:\n```python\n{code}\n```" for code in (bug, engine.answers.gold(item))
    ]
    cands = engine.answers.candidates(item, [*proposals, "no code at all"])
    assert [c.correct for c in cands] == [False, True]
    messages = prompts.synthesizer_messages("humaneval", "Bug Fixer", item.question, proposals, [])
    info = prompts.parse_prompt(messages)
    assert info.kind == "synthesizer" and len(info.candidates) == 2
    replies = [engine.reply("gpt-5-mini", info, item, context=f"s{n}") for n in range(40)]
    picked = sum(bool(r.correct) for r in replies)
    assert picked >= 30  # s = 0.85: picks the right one with p ≈ 0.85 + 0.15 · 0.5


def test_project_manager_writes_a_plan_not_code(engine: Engine, code_items: list[Item]) -> None:
    info = PromptInfo(kind="proposer", domain="humaneval", role="Project Manager")
    reply = engine.reply("qwen3-8b", info, code_items[1], context="pm")
    assert reply.correct is None and "```" not in reply.text and len(reply.text) > 100
