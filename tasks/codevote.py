"""Execution-based voting among candidate programs (self-consistency for code).

Plurality over program *texts* does not work for code: any two samples differ in
their text, so every vote is a tie.  Instead, every candidate runs in the sandbox on
the example calls of the task's own docstring (``>>> f(1, 2)``, ``f(3) ==> 4``, ...;
no hidden tests are used), and candidates are ranked by

1. how many of the docstring's *stated* example results they reproduce,
2. the size of their behaviour cluster (candidates giving the same results on every
   example call vote together, as in AlphaCode / CodeT),
3. the earliest position (a stable tie-break).

Candidates without code, or whose program does not run at all (syntax error, crash
at import, timeout), get no vote unless no candidate runs.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hieramas.tasks.answers import extract_code
from hieramas.tasks.sandbox import Sandbox, SandboxLimits

__all__ = [
    "Probe",
    "VoteOutcome",
    "behaviour_vote",
    "candidate_program",
    "entry_point",
    "example_probes",
]

MAX_PROBES = 12
_MARK = "__HM_VOTE__"
_LIMITS = SandboxLimits(wall_s=5.0, cpu_s=4, memory_mb=512, max_output_bytes=256 * 1024)
_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
# what may sit between an example call and its stated result on the same line
_ARROW = re.compile(r"^\s*(?:==>|=>|==|➞|->|→|=|should\s+return|returns?|is)\s*(.+)$")


@dataclass(frozen=True, slots=True)
class Probe:
    """One example call from the docstring and, when stated, its expected result (source)."""

    call: str
    expected: str | None


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """The winner's index and how the vote went (for traces)."""

    index: int
    method: str
    probes: int
    runnable: int
    cluster_size: int
    examples_passed: int
    examples_stated: int

    def summary(self) -> dict[str, object]:
        """A trace-friendly dict."""
        return {
            "method": self.method,
            "probes": self.probes,
            "runnable": self.runnable,
            "cluster_size": self.cluster_size,
            "examples_passed": self.examples_passed,
            "examples_stated": self.examples_stated,
        }


def entry_point(task: str) -> str | None:
    """The function the task asks for: the last top-level ``def`` of the prompt."""
    names = _DEF.findall(task)
    return names[-1] if names else None


def _literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _call_at(text: str, start: int) -> str | None:
    """The balanced ``name(...)`` starting at ``start`` (``None`` if unbalanced)."""
    depth = 0
    quote: str | None = None
    for pos in range(text.index("(", start), len(text)):
        char = text[pos]
        if quote:
            if char == quote and text[pos - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return text[start : pos + 1]
        elif char == "\n" and depth == 0:
            return None
    return None


def _literal_call(call: str, name: str) -> bool:
    """``call`` is ``name(<literals>)``: safe to run and meaningful to compare."""
    try:
        tree = ast.parse(call, mode="eval")
    except SyntaxError:
        return False
    node = tree.body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return False
    if node.func.id != name:
        return False
    parts = [*node.args, *(k.value for k in node.keywords)]
    return all(_literal(ast.unparse(part)) for part in parts)


def _stated_result(rest: str, following: list[str], doctest: bool) -> str | None:
    """The expected result after a call: on the same line, or doctest-style on the next."""
    match = _ARROW.match(rest)
    if match:
        candidate = match.group(1).strip().rstrip(".,;")
        return candidate if _literal(candidate) else None
    if not doctest or rest.strip():
        return None
    lines = []
    for line in following:
        if not line.strip() or line.strip().startswith(">>>"):
            break
        lines.append(line.strip())
    if not lines:
        return "None"  # a doctest that prints nothing expects None
    for candidate in (" ".join(lines), lines[0]):  # a multi-line literal, or prose after it
        if _literal(candidate):
            return candidate
    return None


def example_probes(task: str, name: str | None = None) -> list[Probe]:
    """The example calls of ``name`` (default: :func:`entry_point`) in the task's text."""
    name = name or entry_point(task)
    if name is None:
        return []
    lines = task.splitlines()
    probes: dict[str, Probe] = {}
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\s*\(")
    for number, line in enumerate(lines):
        if re.match(r"^\s*(?:async\s+)?def\s", line):
            continue
        for match in pattern.finditer(line):
            call = _call_at(line, match.start())
            if call is None or not _literal_call(call, name):
                continue
            rest = line[match.start() + len(call) :]
            doctest = line[: match.start()].strip().endswith(">>>")
            expected = _stated_result(rest, lines[number + 1 :], doctest)
            known = probes.get(call)
            if known is None or (known.expected is None and expected is not None):
                probes[call] = Probe(call, expected)
    return list(probes.values())[:MAX_PROBES]


def candidate_program(task: str, code: str, name: str, probes: Sequence[Probe]) -> str:
    """The program that defines the candidate and prints its behaviour on ``probes``."""
    defines = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE)
    if defines:
        body = task + "\n\n" + code
    else:  # a function body, as HumanEval completions may be
        body = task + textwrap.indent(textwrap.dedent(code), "    ")
    cases = json.dumps([[p.call, p.expected] for p in probes])
    return (
        f"{body}\n\n"
        "import json as _hm_json\n"
        "_hm_rows = []\n"
        f"for _hm_call, _hm_expected in _hm_json.loads({cases!r}):\n"
        "    try:\n"
        "        _hm_value = eval(_hm_call)\n"
        "        _hm_match = None\n"
        "        if _hm_expected is not None:\n"
        "            try:\n"
        "                _hm_match = bool(_hm_value == eval(_hm_expected))\n"
        "            except Exception:\n"
        "                _hm_match = False\n"
        "        _hm_rows.append(['ok', repr(_hm_value)[:2000], _hm_match])\n"
        "    except BaseException as _hm_exc:\n"
        "        _hm_rows.append(['raised', type(_hm_exc).__name__, False])\n"
        f"print({_MARK!r} + _hm_json.dumps(_hm_rows))\n"
    )


def _behaviour(stdout: str) -> list[list[object]] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                rows = json.loads(line[len(_MARK) :])
            except ValueError:
                return None
            return rows if isinstance(rows, list) else None
    return None


async def behaviour_vote(
    task: str, texts: Sequence[str], sandbox: Sandbox, *, limits: SandboxLimits | None = None
) -> VoteOutcome:
    """Rank ``texts`` (candidate replies) by their behaviour on the task's example calls."""
    if not texts:
        raise ValueError("no candidate to vote on")
    name = entry_point(task)
    codes = [extract_code(text) for text in texts]
    if name is None:
        return VoteOutcome(0, "first:no_entry_point", 0, 0, 0, 0, 0)
    probes = example_probes(task, name)
    stated = sum(p.expected is not None for p in probes)
    runnable = [i for i, code in enumerate(codes) if code is not None]
    results = await sandbox.run_many(
        [candidate_program(task, str(codes[i]), name, probes) for i in runnable],
        limits=limits or _LIMITS,
    )
    behaviours: dict[int, tuple[str, ...]] = {}
    passed: dict[int, int] = {}
    for i, result in zip(runnable, results, strict=True):
        rows = _behaviour(result.stdout) if result.outcome == "ok" else None
        if rows is None:
            continue
        behaviours[i] = tuple(f"{row[0]}:{row[1]}" for row in rows)
        passed[i] = sum(row[2] is True for row in rows)
    if not behaviours:
        return VoteOutcome(0, "first:none_runs", len(probes), 0, 0, 0, stated)
    clusters = Counter(behaviours.values())
    best = max(behaviours, key=lambda i: (passed[i], clusters[behaviours[i]], -i))
    return VoteOutcome(
        index=best,
        method="behaviour" if probes else "runs",
        probes=len(probes),
        runnable=len(behaviours),
        cluster_size=clusters[behaviours[best]],
        examples_passed=passed[best],
        examples_stated=stated,
    )
