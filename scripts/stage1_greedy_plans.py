"""Plan held-out items greedily with a Stage-1 run's best policy and write ``greedy-plans.jsonl``.

A Stage-1 run records the LLMs each *training* query sampled (``learner/episodes.jsonl``)
but, per role, not what the best version chooses when it decodes greedily.  This loads
``best.ckpt`` and the run's config, plans the first ``--items`` items of the test split (the
run's split seed) greedily, nothing executed, and writes one row per item (the supernodes
that run, the config's edges among them, each slot's LLM), so ``hieramas report RUN_DIR``
draws the best policy's LLM selection per role from it.

    .venv/bin/python scripts/stage1_greedy_plans.py /work/runs/mmlu-multi-ent1-rot-s0 [--items 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hieramas.benchcli import load_items
from hieramas.controller.planners import register_planner
from hieramas.learner.dagrun import PLANNER_KIND, TablePlanner, _Stage1, plan_record

OUT = "greedy-plans.jsonl"


def greedy_plans(run_dir: Path, items: int) -> Path:
    run = json.loads((run_dir / "run.json").read_text())
    register_planner(PLANNER_KIND, lambda _spec: TablePlanner())  # the config names it
    stage1 = _Stage1.load(run_dir)
    edges = [tuple(e) for e in stage1.doc.get("edges") or []]
    test, _ = load_items(str(run["dataset"]), "test", items, int(run.get("seed", 0)), None)
    out = run_dir / OUT
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w") as fh:
        for item in test:
            assignment, _, _ = stage1.plan(item.question)
            row = {"item_id": item.id, **plan_record(assignment)}
            ran = set(row["nodes"])
            row["edges"] = [list(e) for e in edges if e[0] in ran and e[1] in ran]
            row["policy_version"] = stage1.loaded.version
            fh.write(json.dumps(row) + "\n")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--items", type=int, default=100, help="first N test items")
    args = parser.parse_args()
    print(greedy_plans(args.run_dir, args.items))


if __name__ == "__main__":
    main()
