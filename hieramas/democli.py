"""``hieramas demo``: the main job, end to end on the EMULATED pool (see :mod:`hieramas.demorun`).

torch and the learner are imported only when the command runs, not when the CLI loads.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["demo"]

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())  # a log: one line per line

EMULATED = "EMULATED: these figures describe the emulator, not real models"


def _default_out() -> Path:
    return Path(f"hieramas-demo-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")


def demo(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="The demo directory (default: ./hieramas-demo-<UTC time>)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller budget: about two minutes.")
    ] = False,
    fetch: Annotated[
        bool,
        typer.Option(help="Fetch MMLU-Redux into the data directory when it is missing."),
    ] = True,
    seed: Annotated[int, typer.Option(help="Split, emulator and training seed.")] = 0,
    limit: Annotated[
        int | None,
        typer.Option(min=2, help="Held-out items per method (default: 20 quick, 100 full)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Queries in flight.")] = 8,
    latency_scale: Annotated[
        float, typer.Option(min=0.0, help="The emulator's latency factor in the evaluation.")
    ] = 0.0,
    data_dir: Annotated[Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The main job on the EMULATED pool: train Stage 1 (LLM selection, with a learner) and
    Stage 2 (the DAG classifier) briefly on MMLU-Redux, update the policy live under a
    query stream, and evaluate the learned system against baselines on held-out items.
    Writes --out DIR: stage1/, stage2/, evaluation.json, live_update.json, report/."""
    from dataclasses import replace

    from hieramas.demorun import FULL, QUICK, DemoError, DemoOptions, run_demo
    from hieramas.processes import unwind_on_signals
    from hieramas.progress import ProgressDisplay

    budget = QUICK if quick else FULL
    if limit is not None:
        budget = replace(budget, eval_items=limit, live_queries=min(budget.live_queries, limit))
    options = DemoOptions(
        out=out_dir or _default_out(), budget=budget, seed=seed, data_dir=data_dir,
        fetch=fetch, concurrency=concurrency, latency_scale=latency_scale,
    )  # fmt: skip
    unwind_on_signals()  # SIGTERM/SIGHUP stop the embedded stacks like Ctrl-C
    err.print(
        f"demo directory {options.out} ({'quick' if quick else 'full'} budget); "
        "every figure is EMULATED (the emulated LLM pool, not real models)",
        highlight=False,
    )
    try:
        with ProgressDisplay(err) as progress:
            summary = run_demo(options, progress)
    except DemoError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    _print(summary, options.out)


def _live_line(live: dict[str, Any]) -> str:
    def tally(counts: dict[str, int]) -> str:
        return ", ".join(f"v{v}: {n}" for v, n in sorted(counts.items())) or "none"

    return (
        f"live policy update (from the trace stream): policy v{live['published_version']} was "
        f"published while queries ran ({live['in_flight_at_publish']} in flight). "
        f"Queries started before it were planned by [{tally(live['started_before'])}], "
        f"after it by [{tally(live['started_after'])}]"
    )


def _print(summary: dict[str, Any], where: Path) -> None:
    methods = summary["methods"]
    n = methods[0]["n"] if methods else 0
    table = Table(
        "method", "n", "accuracy", "95% CI", "$/query", "latency p50 s", "p95 s", "edges",
        title=f"EMULATED MMLU-Redux, {n} held-out test items (split seed {summary['seed']})",
    )  # fmt: skip
    for m in methods:
        low, high = m["ci95"]
        table.add_row(
            m["method"], str(m["n"]), f"{m['accuracy']:.3f}", f"{low:.3f}-{high:.3f}",
            f"{m['cost_per_query_usd']:.5f}", f"{m['latency_p50_s']:.2f}",
            f"{m['latency_p95_s']:.2f}", f"{m['edges_mean']:.1f}" if "edges_mean" in m else "–",
        )  # fmt: skip
    out.print(table)
    out.print(_live_line(summary["live"]), highlight=False, markup=False)
    best = summary["stage1"].get("best") or {}
    s2 = summary["stage2"]
    auc = (s2.get("training") or {}).get(s2.get("winner") or "", {}).get("auc")
    out.print(
        f"stage 1: best policy v{best.get('version')} after {summary['stage1']['queries']} "
        f"training queries; stage 2: classifier ({s2.get('winner')} loss, validation AUC "
        f"{'–' if auc is None else f'{auc:.3f}'}) from {(s2.get('data') or {}).get('queries')} "
        "queries' candidate DAGs",
        highlight=False,
    )
    report = summary.get("report")
    out.print(
        f"demo directory {where}: stage1/, stage2/, evaluation.json, live_update.json"
        + (f", {report}" if report else " (no report)"),
        highlight=False,
    )
    seconds = summary["seconds"]
    out.print(
        f"took {seconds['total']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
        + f"); load average {summary['load_average']['start'][0]:.1f} at the start",
        highlight=False,
    )
    out.print(f"[{EMULATED}]", highlight=False)
