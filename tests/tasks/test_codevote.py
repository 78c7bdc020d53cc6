"""Execution-based voting among code candidates (real sandbox)."""

from __future__ import annotations

import asyncio

import pytest

from hieramas.tasks.codevote import (
    Probe,
    behaviour_vote,
    candidate_program,
    entry_point,
    example_probes,
)
from hieramas.tasks.datasets import load
from hieramas.tasks.sandbox import Sandbox

TASK = '''from typing import List


def helper(x):
    return x


def add_all(numbers: List[int], start: int = 0) -> int:
    """Sum the numbers, plus start.
    >>> add_all([1, 2, 3])
    6
    >>> add_all([], 5)
    5
    For example: add_all([10], 1) ==> 11
    add_all([2, 2]) ➞ 4
    """
'''

RIGHT_LOOP = "```python\ndef add_all(numbers, start=0):\n    t = start\n    for n in numbers:\n        t += n\n    return t\n```"
RIGHT_SUM = (
    "Here it is:\n```python\ndef add_all(numbers, start=0):\n    return sum(numbers) + start\n```"
)
WRONG = "```python\ndef add_all(numbers, start=0):\n    return sum(numbers)\n```"
CRASH = (
    "```python\nimport no_such_module_anywhere\ndef add_all(numbers, start=0):\n    return 0\n```"
)


def test_entry_point_is_the_last_def_of_the_prompt() -> None:
    assert entry_point(TASK) == "add_all"
    assert entry_point("no functions here") is None


def test_probes_cover_doctest_arrows_and_same_line_results() -> None:
    probes = example_probes(TASK)
    assert probes == [
        Probe("add_all([1, 2, 3])", "6"),
        Probe("add_all([], 5)", "5"),
        Probe("add_all([10], 1)", "11"),
        Probe("add_all([2, 2])", "4"),
    ]


def test_doctest_without_output_expects_none_and_non_literal_calls_are_dropped() -> None:
    task = 'def f(x):\n    """\n    >>> f([])\n\n    >>> f(y)\n    3\n    >>> f(open("/etc/passwd"))\n    """\n'
    assert example_probes(task) == [Probe("f([])", "None")]


def test_candidate_program_reports_each_probe() -> None:
    program = candidate_program(TASK, "return 1", "add_all", [Probe("add_all([1])", "1")])
    assert "def add_all" in program and "__HM_VOTE__" in program
    compile(program, "<candidate>", "exec")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(max_concurrency=2)


def test_the_candidate_matching_the_stated_examples_wins(sandbox: Sandbox) -> None:
    outcome = asyncio.run(behaviour_vote(TASK, [WRONG, CRASH, RIGHT_SUM, RIGHT_LOOP], sandbox))
    assert outcome.index == 2  # first of the two right ones; the wrong one fails 3 examples
    assert outcome.method == "behaviour"
    assert outcome.runnable == 3  # the crashing one does not vote
    assert outcome.cluster_size == 2
    assert (outcome.examples_passed, outcome.examples_stated) == (4, 4)


def test_the_larger_behaviour_cluster_wins_without_stated_results(sandbox: Sandbox) -> None:
    task = 'def double(x):\n    """Double x, e.g. double(3)."""\n'
    odd = "```python\ndef double(x):\n    return x + 2\n```"
    twice = "```python\ndef double(x):\n    return x * 2\n```"
    added = "```python\ndef double(x):\n    return x + x\n```"
    outcome = asyncio.run(behaviour_vote(task, [odd, twice, added], sandbox))
    assert outcome.index == 1 and outcome.cluster_size == 2 and outcome.examples_stated == 0


def test_no_runnable_candidate_falls_back_to_the_first(sandbox: Sandbox) -> None:
    outcome = asyncio.run(behaviour_vote(TASK, ["no code at all", CRASH], sandbox))
    assert outcome.index == 0 and outcome.method == "first:none_runs"


def test_an_endless_candidate_loses_its_vote_only(sandbox: Sandbox) -> None:
    endless = "```python\ndef add_all(numbers, start=0):\n    while True:\n        pass\n```"
    outcome = asyncio.run(behaviour_vote(TASK, [endless, WRONG, RIGHT_LOOP], sandbox))
    assert outcome.index == 2 and outcome.runnable == 2


def test_canonical_humaneval_solutions_pass_their_stated_examples(sandbox: Sandbox) -> None:
    items = load("humaneval")  # $HIERAMAS_DATA_DIR (tests: ../shared/datasets)

    async def run() -> list[str]:
        failing = []
        for item in items:
            outcome = await behaviour_vote(
                item.question, [f"```python\n{item.answer}\n```"], sandbox
            )
            if outcome.examples_passed != outcome.examples_stated:
                failing.append(item.id)
        return failing

    # these docstrings state results their own reference solution does not give (e.g. /47:
    # "median([-10, 4, 6, 1000, 10, 20]) is 15.0"; the reference and the tests say 8.0)
    known_bad = ["HumanEval/47", "HumanEval/116", "HumanEval/130", "HumanEval/148"]
    assert asyncio.run(run()) == known_bad
    with_probes = sum(bool(example_probes(item.question)) for item in items)
    assert with_probes >= 140
