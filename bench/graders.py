"""Grading throughput: multiple choice, MATH and the HumanEval sandbox.

Each figure comes with a baseline measured in the same run:

* MCQ: ``extract_choice`` on realistic replies (reasoning, then the answer
  in one of six styles) vs one naive regex (``answer is (X)``), which misses
  most styles.
* MATH: ``grade_math`` on the gold answer, an equivalent rewrite and a wrong
  answer per MATH-500 item; replies that needed the sympy worker (and the
  symbolic pairs of the curated test data) are reported separately, with
  their mean latency; baseline: string equality after ``normalize_math``.
* Sandbox: all 164 canonical HumanEval programs with tests, through the
  isolated sandbox vs plain ``python -I -S`` subprocesses (no limits, no
  namespaces) at the same concurrency.

    python bench/graders.py [--seconds 2] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hieramas.tasks import datasets as ds
from hieramas.tasks.answers import extract_choice
from hieramas.tasks.graders import humaneval_program
from hieramas.tasks.graders.math import grade_math, math_equivalent
from hieramas.tasks.mathtext import last_boxed, normalize_math
from hieramas.tasks.sandbox import Sandbox, SandboxLimits, describe

PAIRS = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "tasks"
    / "data"
    / "math_equivalence_pairs.jsonl"
)
REASONING = (
    "Let us consider each option in turn. The question asks about the key concept, and we "
    "should recall the relevant definitions before comparing the choices. Several options are "
    "plausible at first sight, but careful reading rules most of them out: one contradicts the "
    "premise, another confuses cause and effect, and a third is too broad to be correct. "
)


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of ``fn`` (which grades a batch and returns its size)."""
    done, started = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def mcq_replies(items: Sequence[ds.Item]) -> list[tuple[str, tuple[str, ...]]]:
    rng = random.Random(0)
    out = []
    for n, item in enumerate(items):
        letter = item.answer if rng.random() < 0.7 else rng.choice("ABCD")
        text = item.choices["ABCD".index(letter)]
        style = n % 6
        if style == 0:
            reply = f"{REASONING}\nThe answer is ({letter})"
        elif style == 1:
            reply = f"{REASONING}\nAnswer: {letter}."
        elif style == 2:
            reply = f"{REASONING}\n**{letter}**"
        elif style == 3:
            reply = f"{letter}. {text}\n{REASONING}"
        elif style == 4:
            reply = f"{REASONING}\nTherefore the correct option is \\boxed{{{letter}}}."
        else:
            reply = f"{REASONING}\nThe answer is {text}"
        out.append((reply, item.choices))
    return out


def bench_mcq(seconds: float) -> dict[str, Any]:
    replies = mcq_replies(ds.load("mmlu"))
    naive = re.compile(r"answer is \(?([A-D])\)?")

    def ours() -> int:
        for reply, choices in replies:
            extract_choice(reply, choices)
        return len(replies)

    def baseline() -> int:
        for reply, _ in replies:
            naive.search(reply)
        return len(replies)

    parsed = sum(extract_choice(r, c) is not None for r, c in replies) / len(replies)
    parsed_naive = sum(naive.search(r) is not None for r, _ in replies) / len(replies)
    return {
        "items": len(replies),
        "items_per_s": rate(ours, seconds),
        "baseline_items_per_s": rate(baseline, seconds),
        "parsed": parsed,
        "baseline_parsed": parsed_naive,
    }


def _wrong(answer: str) -> str:
    number = re.fullmatch(r"-?\d+", answer.strip())
    return str(int(answer) + 1) if number else answer + "+1"


def bench_math(seconds: float) -> dict[str, Any]:
    items = ds.load("math500")
    replies: list[tuple[ds.Item, str]] = []
    for item in items:
        rewrite = last_boxed(str(item.meta["solution"])) or item.answer
        for answer in (item.answer, rewrite, _wrong(item.answer)):
            replies.append((item, f"{REASONING}\nSo the answer is $\\boxed{{{answer}}}$."))
    # first pass: which replies need sympy (timed separately)
    fast: list[tuple[ds.Item, str]] = []
    sympy_times: list[float] = []
    for item, reply in replies:
        started = time.perf_counter()
        grade = grade_math(item, reply)
        elapsed = time.perf_counter() - started
        if grade.detail in ("sympy", "numeric-fallback"):
            sympy_times.append(elapsed)
        else:
            fast.append((item, reply))

    def ours() -> int:
        for item, reply in fast:
            grade_math(item, reply)
        return len(fast)

    def baseline() -> int:
        for item, reply in fast:
            boxed = last_boxed(reply)
            _ = boxed is not None and normalize_math(boxed) == normalize_math(item.answer)
        return len(fast)

    # symbolic answers (the curated pairs of the tests) exercise the sympy worker
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    for pair in pairs:
        started = time.perf_counter()
        verdict = math_equivalent(pair["a"], pair["b"])
        if verdict.method in ("sympy", "numeric-fallback"):
            sympy_times.append(time.perf_counter() - started)
    return {
        "items": len(replies),
        "without_sympy": len(fast),
        "items_per_s": rate(ours, seconds),
        "baseline_items_per_s": rate(baseline, seconds),
        "sympy_items": len(sympy_times),
        "sympy_mean_ms": 1000 * sum(sympy_times) / max(1, len(sympy_times)),
    }


async def _plain(programs: Sequence[str], concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)
    workdir = Path(tempfile.mkdtemp(prefix="hieramas-bench-"))

    async def one(n: int, code: str) -> bool:
        async with gate:
            path = workdir / f"p{n}.py"
            path.write_text(code)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", str(path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            return await proc.wait() == 0

    results = await asyncio.gather(*(one(n, c) for n, c in enumerate(programs)))
    return sum(results)


def bench_sandbox(concurrency: int) -> dict[str, Any]:
    items = ds.load("humaneval")
    programs = [humaneval_program(item, item.answer) for item in items]
    sandbox = Sandbox(SandboxLimits(wall_s=30), max_concurrency=concurrency)
    sandbox.run_sync("pass")  # set-up probe outside the timing
    started = time.perf_counter()
    results = sandbox.run_many_sync(programs)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    plain_passed = asyncio.run(_plain(programs, concurrency))
    plain = time.perf_counter() - started
    return {
        "items": len(programs),
        "passed": sum(r.passed for r in results),
        "items_per_s": len(programs) / ours,
        "baseline_items_per_s": len(programs) / plain,
        "baseline_passed": plain_passed,
        "setup": describe(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per figure")
    parser.add_argument("--concurrency", type=int, default=2, help="sandbox processes at once")
    args = parser.parse_args(argv)
    print(
        f"cpus={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f} python={sys.version.split()[0]}"
    )

    mcq = bench_mcq(args.seconds)
    print(
        f"MCQ      {mcq['items_per_s']:>10,.0f} items/s  (target >= 50,000)  "
        f"naive regex {mcq['baseline_items_per_s']:,.0f}/s, "
        f"ratio {mcq['items_per_s'] / mcq['baseline_items_per_s']:.2f}; "
        f"parsed {mcq['parsed']:.1%} vs naive {mcq['baseline_parsed']:.1%} of {mcq['items']}"
    )
    math = bench_math(args.seconds)
    print(
        f"MATH     {math['items_per_s']:>10,.0f} items/s  (target >= 2,000, without sympy; "
        f"{math['without_sympy']}/{math['items']} replies)  string-only baseline "
        f"{math['baseline_items_per_s']:,.0f}/s, ratio "
        f"{math['items_per_s'] / math['baseline_items_per_s']:.2f}; sympy fallbacks "
        f"(MATH-500 replies + curated pairs): {math['sympy_items']}, "
        f"mean {math['sympy_mean_ms']:.1f} ms each"
    )
    sbx = bench_sandbox(args.concurrency)
    print(
        f"Sandbox  {sbx['items_per_s']:>10,.1f} items/s  (target >= 20, concurrency "
        f"{args.concurrency})  passed {sbx['passed']}/{sbx['items']}; plain subprocess "
        f"{sbx['baseline_items_per_s']:.1f}/s, ratio "
        f"{sbx['items_per_s'] / sbx['baseline_items_per_s']:.2f}; set-up {sbx['setup']}"
    )


if __name__ == "__main__":
    main()
