"""Bug injection, and the HumanEval gate: canonical solutions pass, injected bugs fail."""

from __future__ import annotations

import ast
import asyncio
import textwrap
from collections import Counter

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.answers import extract_code, normalize_code
from hieramas.tasks.bugs import BugInjectionError, inject_bug, mutation_sites
from hieramas.tasks.graders import (
    failing_bug,
    grade_humaneval,
    humaneval_candidate,
    run_humaneval,
)
from hieramas.tasks.sandbox import Sandbox, SandboxLimits

CODE = '''def f(xs: list[int], k: int = 3) -> bool:
    """True when some element exceeds k."""
    total = 0
    for x in xs:
        if x > k and not x == 99:
            total += 1
    return total >= 1
'''


def test_inject_bug_is_deterministic_and_real() -> None:
    a, b = inject_bug(CODE, 5), inject_bug(CODE, 5)
    assert a == b
    mutants = {inject_bug(CODE, seed) for seed in range(40)}
    assert len(mutants) > 5
    for mutant in mutants:
        tree = ast.parse(mutant)  # always valid Python
        assert normalize_code(mutant) != normalize_code(CODE)
        func = tree.body[0]
        assert isinstance(func, ast.FunctionDef)
        assert ast.unparse(func.args) == "xs: list[int], k: int=3"  # signature untouched
        assert ast.get_docstring(func) == "True when some element exceeds k."
    kinds = set(mutation_sites(CODE))
    assert {"compare", "constant", "arith", "boolean", "negation"} <= kinds


def test_inject_bug_edge_cases() -> None:
    with pytest.raises(BugInjectionError, match="parse"):
        inject_bug("def f(:", 0)
    with pytest.raises(BugInjectionError, match="no function"):
        inject_bug("x = 1", 0)
    # nothing to mutate: the function returns None straight away
    mutant = inject_bug("def f(x):\n    return x\n", 0)
    assert "return None" in mutant


@pytest.fixture(scope="module")
def humaneval() -> list[ds.Item]:
    return ds.load("humaneval")


async def test_grade_humaneval_outcomes(humaneval: list[ds.Item]) -> None:
    item = humaneval[0]
    sandbox = Sandbox(SandboxLimits(wall_s=30))
    body_only = f"```python\n{item.meta['canonical_solution']}```"
    full = f"Here you go:\n```python\n{item.answer}```"
    wrong = f"```python\n{inject_bug(item.answer, 1)}\n```"
    loops = (
        "```python\ndef has_close_elements(numbers, threshold):\n    while True:\n        pass\n```"
    )
    results = await asyncio.gather(
        grade_humaneval(item, full, sandbox),
        grade_humaneval(item, body_only, sandbox),
        grade_humaneval(item, wrong, sandbox),
        grade_humaneval(item, "I would loop over pairs.", sandbox),
        grade_humaneval(item, loops, Sandbox(SandboxLimits(wall_s=30, cpu_s=1))),
    )
    assert [r.outcome for r in results] == ["correct", "correct", "wrong", "unparseable", "wrong"]
    assert results[2].detail == "error"
    assert results[4].detail in ("cpu_limit", "timeout")


async def test_bare_function_bodies_are_graded_as_the_reference_harness_does(
    humaneval: list[ds.Item],
) -> None:
    """HumanEval's own completion style: the body alone, unfenced, continuing the prompt."""
    item = humaneval[0]
    body = str(item.meta["canonical_solution"])
    assert extract_code(body) == body  # before: unparseable (no fence, no def)
    assert extract_code("   I would loop over the pairs.") is None  # indented prose is not code
    # a helper after the body, at column 0: only prompt + completion as is defines it
    helper = "    return _close(numbers, threshold)\n\n" + (
        "def _close(xs, t):\n"
        "    return any(abs(a - b) < t for i, a in enumerate(xs) for b in xs[i + 1 :])\n"
    )
    dedented = f"```python\n{textwrap.dedent(body)}```"  # a model that dropped the indent
    sandbox = Sandbox(SandboxLimits(wall_s=30))
    grades = await asyncio.gather(
        *(grade_humaneval(item, reply, sandbox) for reply in (body, helper, dedented))
    )
    assert [g.outcome for g in grades] == ["correct"] * 3, [g.detail for g in grades]
    assert humaneval_candidate(item, body) == str(item.meta["prompt"]) + body


@pytest.mark.slow
async def test_gate_canonical_pass_and_injected_bugs_fail(humaneval: list[ds.Item]) -> None:
    """All 164 reference solutions pass; each with an injected bug fails its tests."""
    sandbox = Sandbox(SandboxLimits(wall_s=30, cpu_s=3), max_concurrency=2)
    canonical = await asyncio.gather(*(run_humaneval(i, i.answer, sandbox) for i in humaneval))
    assert [i.id for i, r in zip(humaneval, canonical, strict=True) if not r.checked] == []
    first = await asyncio.gather(
        *(run_humaneval(i, inject_bug(i.answer, 0), sandbox) for i in humaneval)
    )
    killed_first = sum(not r.passed for r in first)
    assert killed_first >= 0.85 * len(humaneval)  # most single mutations are caught at once
    survivors = [i for i, r in zip(humaneval, first, strict=True) if r.passed]
    retried = await asyncio.gather(*(failing_bug(i, sandbox, seed=1) for i in survivors))
    assert [i.id for i, m in zip(survivors, retried, strict=True) if m is None] == []
    outcomes = Counter(r.outcome for r in first)
    assert outcomes["ok"] == len(survivors)
