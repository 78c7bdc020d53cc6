"""Re-plan a finished Stage-2 run's evaluation offline and write its ``eval.jsonl``.

Runs made before ``train --stage 2`` recorded each held-out query's DAG (``eval.jsonl``)
kept only the summaries.  The plans are deterministic: the frozen Stage-1 policy (greedy),
the saved ``classifier.ckpt`` scoring the same seeded candidates, and the per-edge
learner rebuilt by replaying ``per-edge.jsonl``.  This recomputes them with
:func:`hieramas.learner.dagrun.plan_evaluation` (no LLM call, nothing executed) and
writes one row per (method, item) marked ``"replanned": true`` and without outcomes, so
``hieramas report RUN_DIR`` can draw the selected DAGs and the LLM-by-role heatmap.

    .venv/bin/python scripts/stage2_replan.py /work/runs/s2-mmlu-s0 [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hieramas.benchcli import load_items
from hieramas.controller.planners import register_planner
from hieramas.learner.dagcheckpoint import decode_classifier
from hieramas.learner.dagplanning import TopologyChooser
from hieramas.learner.dagrun import (
    EDGE_LOG,
    EVAL_LOG,
    PLANNER_KIND,
    Stage2Options,
    TablePlanner,
    _adjacencies,
    _read_done,
    _Stage1,
    plan_evaluation,
    plan_record,
)
from hieramas.learner.edgereinforce import EdgeReinforce


def replan(run_dir: Path, force: bool = False) -> Path:
    out = run_dir / EVAL_LOG
    if out.exists() and not force:
        raise SystemExit(f"{out} exists (--force replaces it)")
    run = json.loads((run_dir / "run.json").read_text())
    fields = set(Stage2Options.__dataclass_fields__)
    run = {k: v for k, v in run.items() if k in fields}
    options = Stage2Options(**{**run, "run_dir": run_dir, "stage1": Path(run["stage1"])})
    summary = json.loads((run_dir / "summary.json").read_text())
    register_planner(PLANNER_KIND, lambda _spec: TablePlanner())  # the config names it
    stage1 = _Stage1.load(options.stage1)
    net = decode_classifier((run_dir / "classifier.ckpt").read_bytes()).net()
    chooser = TopologyChooser(
        net, candidates=options.score_candidates, d_min=options.d_min, d_max=options.d_max
    )
    edges = None
    if options.edge_baseline:
        edges = EdgeReinforce(len(stage1.nodes), seed=options.seed)
        for row in _read_done(run_dir / EDGE_LOG):
            edges.update(
                _adjacencies(row, len(stage1.nodes)),
                [c["reward"] for c in row["candidates"]],
                stage1.active(tuple(row["actions"])),
            )
    n_items = int(summary.get("eval_items") or options.eval_items)
    items, _ = load_items(options.dataset, "test", n_items, options.seed, options.data_dir)
    plans = plan_evaluation(stage1, chooser, items, options, edges)
    missing = set(summary.get("eval") or {}) - set(plans)
    if missing:
        print(f"warning: not re-planned (options not recorded): {sorted(missing)}", file=sys.stderr)
    for method, table in plans.items():  # the check: the same DAGs as the run's evaluation
        recorded = (summary.get("eval") or {}).get(method, {}).get("edges_mean")
        mean = sum(len(table[item.id].edges) for item in items) / max(1, len(items))
        same = recorded is not None and abs(mean - recorded) < 1e-6
        print(
            f"{method}: mean edges {mean:.2f}, run recorded {recorded} ({'same' if same else 'DIFFERENT'})"
        )
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w") as fh:
        for method, table in plans.items():
            for item in items:
                row = {"method": method, "item_id": item.id, **plan_record(table[item.id])}
                fh.write(json.dumps({**row, "replanned": True}) + "\n")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--force", action="store_true", help="replace an existing eval.jsonl")
    args = parser.parse_args()
    print(replan(args.run_dir, args.force))


if __name__ == "__main__":
    main()
