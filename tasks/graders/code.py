"""HumanEval grading: the completion and the item's tests run in the sandbox."""

from __future__ import annotations

import asyncio
import re
import textwrap

from hieramas.tasks.answers import extract_code
from hieramas.tasks.bugs import BugInjectionError, inject_bug
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.types import Grade
from hieramas.tasks.sandbox import Sandbox

__all__ = [
    "failing_bug",
    "grade_humaneval",
    "grade_humaneval_sync",
    "humaneval_program",
]


def humaneval_program(item: Item, code: str) -> str:
    """The test program for ``code``: a full function (appended after the prompt, so the
    prompt's imports and helpers stay available) or a body (appended to the prompt),
    then the item's tests and ``check(entry_point)``."""
    entry = str(item.meta["entry_point"])
    prompt = str(item.meta["prompt"])
    defines = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    if defines:
        body = prompt + "\n\n" + code
    else:  # a function body, possibly dedented by the model
        body = prompt + textwrap.indent(textwrap.dedent(code), "    ")
    return f"{body}\n\n{item.meta['test']}\n\ncheck({entry})\n"


async def grade_humaneval(item: Item, text: str, sandbox: Sandbox) -> Grade:
    """Extract the code of ``text`` and run the item's tests on it in ``sandbox``.

    ``detail`` is the sandbox outcome (``ok``, ``error``, ``timeout``, ``blocked``...).
    """
    code = extract_code(text)
    if code is None:
        return Grade("unparseable", None, item.answer, "no python code found")
    result = await sandbox.run(humaneval_program(item, code))
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
        result = await sandbox.run(humaneval_program(item, mutant))
        if not result.passed:
            return mutant
    return None
