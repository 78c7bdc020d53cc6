"""HumanEval grading: the completion and the item's tests run in the sandbox."""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap

from hieramas.tasks.answers import extract_code
from hieramas.tasks.bugs import BugInjectionError, inject_bug
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.types import Grade
from hieramas.tasks.sandbox import Sandbox, SandboxLimits, SandboxResult

__all__ = [
    "failing_bug",
    "grade_humaneval",
    "grade_humaneval_sync",
    "humaneval_candidate",
    "humaneval_program",
    "humaneval_tests",
    "run_humaneval",
]


def humaneval_candidate(item: Item, code: str) -> str:
    """The program that defines the candidate function: the prompt, then ``code``.

    ``code`` is a full function (after the prompt, so the prompt's imports and
    helpers stay available) or, as HumanEval completions are written, the body
    that continues the prompt: appended as is, as the reference harness does
    (``prompt + completion``), or re-indented if it was dedented.
    """
    entry = str(item.meta["entry_point"])
    prompt = str(item.meta["prompt"])
    defines = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    if defines:
        return prompt + "\n\n" + code
    first = next((line for line in code.splitlines() if line.strip()), "")
    if first[:1].isspace() and _parses(prompt + code):
        return prompt + code
    return prompt + textwrap.indent(textwrap.dedent(code), "    ")


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def humaneval_tests(item: Item) -> str:
    """The trusted side of a check: the prompt (its helpers, which some tests call) and the
    item's tests, which define ``check(candidate)``."""
    return f"{item.meta['prompt']}\n\n{item.meta['test']}\n"


def humaneval_program(item: Item, code: str) -> str:
    """One program of candidate, tests and ``check(entry_point)``, as the reference harness
    builds it.  Its exit status is no proof that the tests ran (the code may exit first):
    grading uses :func:`grade_humaneval`, which runs them apart."""
    entry = item.meta["entry_point"]
    return f"{humaneval_candidate(item, code)}\n\n{item.meta['test']}\n\ncheck({entry})\n"


async def run_humaneval(
    item: Item, code: str, sandbox: Sandbox, *, limits: SandboxLimits | None = None
) -> SandboxResult:
    """``check(candidate)`` of ``item`` on ``code`` in ``sandbox``, the tests apart from the
    code (:meth:`Sandbox.run_check`)."""
    program, tests = humaneval_candidate(item, code), humaneval_tests(item)
    return await sandbox.run_check(program, tests, str(item.meta["entry_point"]), limits=limits)


async def grade_humaneval(item: Item, text: str, sandbox: Sandbox) -> Grade:
    """Extract the code of ``text`` and run the item's tests on it in ``sandbox``.

    Correct only when the sandbox proved that ``check`` ran to its end.
    ``detail`` is the sandbox outcome (``ok``, ``error``, ``early_exit``, ``timeout``,
    ``blocked``...).
    """
    code = extract_code(text)
    if code is None:
        return Grade("unparseable", None, item.answer, "no python code found")
    result = await run_humaneval(item, code, sandbox)
    return Grade("correct" if result.passed else "wrong", code, item.answer, result.outcome)


def grade_humaneval_sync(item: Item, text: str, sandbox: Sandbox | None = None) -> Grade:
    """Blocking :func:`grade_humaneval` (no event loop may be running)."""
    return asyncio.run(grade_humaneval(item, text, sandbox or Sandbox()))


async def failing_bug(item: Item, sandbox: Sandbox, *, seed: int, attempts: int = 8) -> str | None:
    """A version of the reference solution with an injected bug that really fails the tests.

    Tries seeds ``seed, seed + 1, ...`` (``attempts`` of them); None if every
    mutant passed (equivalent mutants) or the code cannot be mutated.
    """
    for k in range(attempts):
        try:
            mutant = inject_bug(item.answer, seed + k)
        except BugInjectionError:
            return None
        result = await run_humaneval(item, mutant, sandbox)
        if not result.passed:
            return mutant
    return None
