"""CPU instructions per reply of the MCQ and GSM8K answer extractors, counted by valgrind.

``extract_answer`` runs on every reply in the runtime (the supernodes' consensus check), so its
cost matters beyond grading.  Wall-clock figures on the shared 2-core VM swing by 30% or more
with the load, which hides a change of this size; callgrind counts instructions, the same
whatever else runs (see ``bench/instructions.py``).

The replies are those of ``bench/graders.py``: MMLU-Redux replies in six styles (the first
``--items`` items) and GSM8K reference solutions in four final-line styles.  They are built
here and handed to child processes in a file, so a child only imports
``hieramas.tasks.answers``: ``--pythonpath DIR`` runs the children on another checkout's
package (the symlink farm of DEVELOPERS.md), to count its extractors on the same replies.
Each figure is (instructions of a child reading every reply ``--loops + 1`` times minus one
reading them once) / (``--loops`` x replies).

    python bench/extraction.py [--items 1200] [--loops 2] [--styles] [--pythonpath DIR]

Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
MCQ_STYLES = ("answer is (X)", "Answer: X.", "**X**", "leading X.", "\\boxed{X}", "choice text")
GSM8K_STYLES = ("The answer is N", "#### N", "\\boxed{N}", "last number")


def child(path: str, kind: str, style: int, loops: int) -> None:
    """Inside valgrind: read the replies of ``kind`` (one style, or all if -1) ``loops`` times."""
    from hieramas.tasks.answers import extract_choice, extract_number

    data = json.loads(Path(path).read_text())
    rows = [r for n, r in enumerate(data[kind]) if style < 0 or n % data["styles"][kind] == style]
    for _ in range(loops):
        if kind == "mcq":
            for reply, choices in rows:
                extract_choice(reply, tuple(choices))
        else:
            for reply, _ in rows:
                extract_number(reply)


def count(valgrind: str, path: str, kind: str, style: int, loops: int, pythonpath: str) -> int:
    """Instructions of one child process."""
    args = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
        str(Path(__file__).resolve()), "--child", path, kind, str(style), str(loops),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(found.group(1))


def write_replies(items: int) -> str:
    """The bench replies, in a temporary JSON file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from graders import gsm8k_replies, mcq_replies

    from hieramas.tasks import datasets as ds

    data = {
        "mcq": mcq_replies(ds.load("mmlu"))[:items],
        "gsm8k": gsm8k_replies(ds.load("gsm8k"))[:items],
        "styles": {"mcq": len(MCQ_STYLES), "gsm8k": len(GSM8K_STYLES)},
    }
    fd, path = tempfile.mkstemp(prefix="hieramas-extraction-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1200, help="replies per task")
    parser.add_argument("--loops", type=int, default=2, help="extra passes counted")
    parser.add_argument("--styles", action="store_true", help="one figure per reply style too")
    parser.add_argument("--pythonpath", default="", help="the children's PYTHONPATH")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind not found (Debian package 'valgrind')")
    path = write_replies(args.items)
    try:
        print(f"extractors: {args.pythonpath or 'this checkout'}")
        for kind, styles in (("mcq", MCQ_STYLES), ("gsm8k", GSM8K_STYLES)):
            for style in [-1, *range(len(styles))] if args.styles else [-1]:
                rows = args.items if style < 0 else len(range(style, args.items, len(styles)))
                once = count(valgrind, path, kind, style, 1, args.pythonpath)
                more = count(valgrind, path, kind, style, args.loops + 1, args.pythonpath)
                label = "all styles" if style < 0 else styles[style]
                per_reply = (more - once) / (args.loops * rows)
                print(f"{kind:6} {label:16} {per_reply:>10,.0f} instructions per reply")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
