"""Pick one of several Stage-1 runs (same dataset and seed, different λ) by validation only.

Each run's ``summary.json`` records under ``best`` the version ``--select`` kept, with its
validation accuracy and cost per query. The pick is the run whose kept version is the most
accurate on validation, ties to the lower validation cost per query (the pre-registered rule
of docs/results.md). Only ``summary.json`` and ``run.json`` are read, never test items.

    python scripts/pick_by_validation.py RUN_DIR RUN_DIR [...]   # table and the pick
    python scripts/pick_by_validation.py --lam-only RUN_DIR ...  # prints only the pick's λ
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PickError(Exception):
    """The run dirs cannot be compared: unfinished, no kept version, or mixed datasets/seeds."""


@dataclass(frozen=True)
class Candidate:
    """One run's kept version as its validation saw it."""

    run_dir: Path
    dataset: str
    seed: int
    lam: float | None
    select: str | None
    version: int
    accuracy: float
    cost_per_query_usd: float
    queries: int | None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PickError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise PickError(f"{path}: not a JSON object")
    return data


def load(run_dir: Path) -> Candidate:
    """Read a finished run's kept version; raises :class:`PickError` if it has none."""
    summary = _json(run_dir / "summary.json")
    run = _json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    best = summary.get("best")
    if not isinstance(best, dict) or best.get("accuracy") is None:
        raise PickError(f"{run_dir}: summary.json records no kept version (no evaluation?)")
    lam = run.get("lam")
    return Candidate(
        run_dir=run_dir,
        dataset=str(summary.get("dataset")),
        seed=int(summary.get("seed", -1)),
        lam=float(lam) if lam is not None else None,
        select=run.get("select"),
        version=int(best["version"]),
        accuracy=float(best["accuracy"]),
        cost_per_query_usd=float(best["cost_per_query_usd"]),
        queries=best.get("queries"),
    )


def pick(candidates: list[Candidate]) -> Candidate:
    """The most accurate kept version on validation, then the cheaper; same dataset and seed."""
    if not candidates:
        raise PickError("no run dirs given")
    kinds = {(c.dataset, c.seed) for c in candidates}
    if len(kinds) > 1:
        raise PickError(f"runs differ in dataset or seed: {sorted(kinds)}")
    return min(candidates, key=lambda c: (-c.accuracy, c.cost_per_query_usd))


def table(candidates: list[Candidate], chosen: Candidate) -> str:
    """A Markdown table of the candidates with the pick marked and the reason."""
    lines = [
        "| run | λ | select | kept version | val accuracy | val $/query | picked |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in candidates:
        mark = "**yes**" if c is chosen else ""
        lam = f"{c.lam:g}" if c.lam is not None else "?"
        lines.append(
            f"| {c.run_dir.name} | {lam} | {c.select} | v{c.version} | {c.accuracy:.3f} | "
            f"{c.cost_per_query_usd:.6f} | {mark} |"
        )
    top = [c for c in candidates if c.accuracy == chosen.accuracy]
    why = (
        f"highest validation accuracy ({chosen.accuracy:.3f})"
        if len(top) == 1
        else f"tied at validation accuracy {chosen.accuracy:.3f} with {len(top) - 1} other(s); "
        f"the cheaper (${chosen.cost_per_query_usd:.6f}/query)"
    )
    lines.append("")
    lines.append(f"pick: {chosen.run_dir} (λ {chosen.lam}, v{chosen.version}): {why}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    lam_only = "--lam-only" in argv
    dirs = [Path(a) for a in argv if a != "--lam-only"]
    try:
        candidates = [load(d) for d in dirs]
        chosen = pick(candidates)
    except PickError as exc:
        print(f"pick_by_validation: {exc}", file=sys.stderr)
        return 2
    if lam_only:
        if chosen.lam is None:
            print(f"pick_by_validation: {chosen.run_dir} has no λ in run.json", file=sys.stderr)
            return 2
        print(f"{chosen.lam:g}")
    else:
        print(table(candidates, chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
