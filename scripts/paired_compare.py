"""Paired comparison of the methods of a ``hieramas compare`` run, item by item.

Every method of a comparison answered the same items, so two methods can be compared
on the items where they disagree: ``b`` items only A solved, ``c`` only B solved.
Prints, for every learned method against every baseline and against every other learned
method (the multi-level policy against its final-only ablation), the accuracy difference
with a 95% interval (normal approximation of the paired difference) and the one-sided exact
sign-test p-value that A is below B (:func:`hieramas.learner.versionselect.sign_test_p`).

    python scripts/paired_compare.py RUN_DIR/compare [MORE_DIRS...]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from hieramas.learner.versionselect import sign_test_p


def _outcomes(folder: Path) -> dict[str, dict[str, bool]]:
    by_method: dict[str, dict[str, bool]] = {}
    for line in (folder / "compare.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("outcome") == "error":
            continue
        by_method.setdefault(row["method"], {})[row["item_id"]] = row["outcome"] == "correct"
    return by_method


def main(folders: list[str]) -> None:
    for name in folders:
        folder = Path(name)
        methods = _outcomes(folder)
        learned = [m for m in methods if m.startswith("learned:")]
        others = [m for m in methods if not m.startswith("learned:")]
        print(f"## {folder}")
        print("| learned | baseline | n | b (only learned) | c (only baseline) | "
              "difference | 95% CI | p (learned below) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        pairs = [(a, b) for a in learned for b in others]
        # learned methods against each other too (multi-level against the ablation)
        pairs += [(a, b) for i, a in enumerate(learned) for b in learned[i + 1 :]]
        for a, b_name in pairs:
            items = sorted(set(methods[a]) & set(methods[b_name]))
            n = len(items)
            b = sum(methods[a][i] and not methods[b_name][i] for i in items)
            c = sum(methods[b_name][i] and not methods[a][i] for i in items)
            diff = (b - c) / n
            # variance of the mean paired difference (values -1, 0, +1)
            var = ((b + c) / n - diff**2) / n
            half = 1.96 * math.sqrt(max(var, 0.0))
            p = sign_test_p(c, b)  # evidence that the learned method is below
            print(f"| {a} | {b_name} | {n} | {b} | {c} | {diff:+.4f} | "
                  f"{diff - half:+.4f}–{diff + half:+.4f} | {p:.3f} |")  # fmt: skip
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
