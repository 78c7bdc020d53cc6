"""The ``hieramas bench --json`` result file: rewritten after every item, resumable.

Real-model runs take hours, so the file is rewritten (atomically) after every graded
item, together with the options that define the methods.  ``--resume`` reads it back:
items that already have a graded row for a method are not asked again (rows that ended
in ``error`` are retried), so a run can survive a crash or be extended to more items
(``--limit`` may grow: items are keyed by id in a deterministic split).  Resuming with
different method-defining options is refused, naming the options that differ.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hieramas.evaluation import ItemResult

__all__ = ["BenchFile", "ResumeError"]

FORMAT = 1


class ResumeError(ValueError):
    """The file cannot be resumed with these options."""


@dataclass
class BenchFile:
    """Summaries, per-item rows and accumulated wall time of one bench invocation."""

    path: Path
    dataset: str
    split_seed: int
    options: dict[str, Any]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    wall_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def resume(
        cls, path: Path, dataset: str, split_seed: int, options: Mapping[str, Any]
    ) -> BenchFile:
        """The file at ``path`` if its options match (a fresh one if it does not exist)."""
        fresh = cls(path, dataset, split_seed, json.loads(json.dumps(dict(options))))
        if not path.exists():
            return fresh
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"cannot resume {path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ResumeError(f"cannot resume {path}: not a resumable bench file")
        theirs = doc.get("options") or {}
        differ = sorted(k for k in set(theirs) | set(fresh.options)
                        if theirs.get(k) != fresh.options.get(k))  # fmt: skip
        if differ or doc.get("dataset") != dataset or doc.get("split_seed") != split_seed:
            what = ", ".join(differ) or "dataset/split"
            raise ResumeError(f"cannot resume {path}: it was written with other {what}")
        fresh.rows = [r for r in doc.get("items", []) if r.get("outcome") != "error"]
        fresh.wall_s = {str(k): float(v) for k, v in (doc.get("wall_s") or {}).items()}
        return fresh

    def done(self, method: str) -> list[ItemResult]:
        """The graded rows already recorded for ``method``."""
        names = {f for f in ItemResult.__dataclass_fields__}
        return [
            ItemResult(**{k: v for k, v in row.items() if k in names})
            for row in self.rows
            if row.get("method") == method
        ]

    def add(self, method: str, result: ItemResult, wall_s: float) -> None:
        """Record one graded item and the method's wall time so far; rewrite the file."""
        self.rows = [
            r for r in self.rows if not (r["method"] == method and r["item_id"] == result.item_id)
        ]
        self.rows.append({"method": method, **asdict(result)})
        self.wall_s[method] = wall_s
        self.write()

    def finish(self, summary: dict[str, Any], results: list[ItemResult]) -> None:
        """Record a method's summary and its rows in item order; rewrite the file."""
        method = summary["method"]
        self.rows = [r for r in self.rows if r["method"] != method]
        self.rows.extend({"method": method, **asdict(r)} for r in results)
        self.summaries.append(summary)
        self.write()

    def write(self) -> None:
        """Rewrite the file atomically (a reader never sees half of it)."""
        doc = {
            "format": FORMAT,
            "dataset": self.dataset,
            "split_seed": self.split_seed,
            "options": self.options,
            "summaries": self.summaries,
            "items": self.rows,
            "wall_s": self.wall_s,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, self.path)
