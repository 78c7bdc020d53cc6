"""The credit-assignment trap: does multi-level credit drop a weak model that final-only keeps?

``hieramas trap`` trains, for each seed, two policies with the same budget, seed,
items and emulator, on the trap pool (``emulator/trap_profiles.yaml``: three strong
models and the cheap, weak llama-8b) with a config where the weak model's slots sit
beside strong ones: the first ``roles`` MMLU roles in parallel (two proposers and a
synthesizer each) and the strongest model as the decision LLM, which reads every
supernode.  One policy is trained with multi-level rewards, the other with the final
reward only.

What is reported per run is the **share of slots the weak model fills**:

- ``greedy``: in the plans of the final version on the validation items (the policy
  as it would be used), for synthesizer slots, proposer slots, all slots, and the
  slots filled by an LLM (not ``skip``/``vote``/``pass``): the share of the calls;
- ``sampled_first`` / ``sampled_last``: in the training plans of the first and the
  last fifth of the iterations (what exploration was doing);
- beside the validation accuracy and cost of that final version.

"Drops or replaces it" means its greedy share falls well under its share under a
uniform policy; nothing here decides that by a threshold: the numbers are reported.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hieramas.learner.driver import METRICS, TrainOptions
from hieramas.learner.querying import Selection
from hieramas.learner.trainrun import read_run, run_training

__all__ = ["TRAP_PROFILES", "TrapOptions", "run_trap", "trap_report", "uniform_share"]

TRAP_PROFILES = str(resources.files("hieramas.emulator").joinpath("trap_profiles.yaml"))
WEAK = "llama-8b"
PSEUDO = frozenset({"skip", "vote", "pass"})


@dataclass(frozen=True)
class TrapOptions:
    """``hieramas trap`` options."""

    out_dir: Path
    seeds: tuple[int, ...] = (0, 1, 2)
    queries: int = 400
    batch: int = 16
    concurrency: int = 8
    roles: int = 4
    eval_items: int = 100
    embedder: str = "all-MiniLM-L6-v2"
    profiles: str = TRAP_PROFILES
    weak: str = WEAK
    data_dir: Path | None = None


def uniform_share(n_llms: int) -> dict[str, float]:
    """The weak model's share of synthesizer and proposer slots under a uniform policy
    (synthesizers: ``skip``, ``vote``, ``pass`` and the LLMs; proposers: ``skip`` and the
    LLMs; ignoring the masks' rare forced choices)."""
    return {"synthesizer": 1 / (n_llms + 3), "proposer": 1 / (n_llms + 1)}


def _train_options(options: TrapOptions, seed: int, reward: str) -> TrainOptions:
    return TrainOptions(
        dataset="mmlu",
        run_dir=options.out_dir / f"{reward}-seed{seed}",
        queries=options.queries,
        batch=options.batch,
        concurrency=options.concurrency,
        seed=seed,
        reward=reward,
        eval_every=0,  # one greedy evaluation, of the final version
        eval_items=options.eval_items,
        embedder=options.embedder,
        profiles=options.profiles,
        roles=options.roles,
        edges="none",
        data_dir=options.data_dir,
    )


def _shares(sel: Selection, weak: str) -> dict[str, float]:
    calls = Counter(
        {a: n for c in (sel.synthesizer, sel.proposer) for a, n in c.items() if a not in PSEUDO}
    )
    return {
        "synthesizer": sel.share(weak, "synthesizer"),
        "proposer": sel.share(weak, "proposer"),
        "all": sel.share(weak),
        "of_llm_slots": calls[weak] / sum(calls.values()) if calls else 0.0,
    }


def run_summary(run_dir: Path, weak: str) -> dict[str, Any]:
    """The weak model's shares, the accuracy and cost of one finished trap run."""
    summary = read_run(run_dir)
    rows = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line]
    train = [r for r in rows if r["kind"] == "train"]
    fifth = max(1, len(train) // 5)
    final = summary["evals"][-1]
    return {
        "run_dir": str(run_dir),
        "queries": summary.get("queries"),
        "final_version": final["version"],
        "val_accuracy": final["accuracy"],
        "val_ci95": final["ci95"],
        "val_cost_per_query_usd": final["cost_per_query_usd"],
        "greedy": _shares(Selection.from_json(final["selection"]), weak),
        "sampled_first": _shares(
            Selection.total(Selection.from_json(r["selection"]) for r in train[:fifth]), weak
        ),
        "sampled_last": _shares(
            Selection.total(Selection.from_json(r["selection"]) for r in train[-fifth:]), weak
        ),
        "greedy_selection": final["selection"],
    }


def trap_report(runs: dict[str, list[dict[str, Any]]], options: TrapOptions) -> dict[str, Any]:
    """Per-mode means over seeds, and per seed whether multi-level gave the weak model fewer
    greedy slots than final-only."""
    means = {
        mode: {
            key: statistics.fmean(r["greedy"][key] for r in rows)
            for key in ("synthesizer", "proposer", "all", "of_llm_slots")
        }
        | {"val_accuracy": statistics.fmean(r["val_accuracy"] for r in rows)}
        | {"val_cost_per_query_usd": statistics.fmean(r["val_cost_per_query_usd"] for r in rows)}
        for mode, rows in runs.items()
        if rows
    }
    per_seed = [
        {
            "seed": seed,
            "multi_of_llm_slots": m["greedy"]["of_llm_slots"],
            "final_of_llm_slots": f["greedy"]["of_llm_slots"],
            "multi_fewer": m["greedy"]["of_llm_slots"] < f["greedy"]["of_llm_slots"],
        }
        for seed, m, f in zip(
            options.seeds, runs.get("multi", []), runs.get("final", []), strict=False
        )
    ]
    return {
        "weak_model": options.weak,
        "profiles": options.profiles,
        "seeds": list(options.seeds),
        "queries_per_run": options.queries,
        "batch": options.batch,
        "roles": options.roles,
        "uniform_share": uniform_share(4),
        "runs": runs,
        "means": means,
        "per_seed": per_seed,
        "emulated": True,
    }


def run_trap(
    options: TrapOptions,
    on_run: Callable[[str, int], None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train every (seed, reward) run (each resumable in its own directory), then report."""
    runs: dict[str, list[dict[str, Any]]] = {"multi": [], "final": []}
    for seed in options.seeds:
        for reward in ("multi", "final"):
            if on_run is not None:
                on_run(reward, seed)
            train = _train_options(options, seed, reward)
            run_training(train, progress)
            runs[reward].append(run_summary(train.run_dir, options.weak))
    report = trap_report(runs, options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / "trap.json").write_text(json.dumps(report, indent=1))
    return report


def format_rows(report: dict[str, Any]) -> Sequence[list[str]]:
    """Table rows: mode, seed, the weak model's greedy shares, sampled share, val accuracy, cost."""
    rows = []
    for mode in ("multi", "final"):
        for seed, run in zip(report["seeds"], report["runs"][mode], strict=False):
            g, last = run["greedy"], run["sampled_last"]
            rows.append(
                [
                    mode, str(seed), f"{g['synthesizer']:.3f}", f"{g['proposer']:.3f}",
                    f"{g['all']:.3f}", f"{g['of_llm_slots']:.3f}",
                    f"{run['sampled_first']['all']:.3f}",
                    f"{last['all']:.3f}", f"{run['val_accuracy']:.3f}",
                    f"{run['val_cost_per_query_usd']:.3g}",
                ]
            )  # fmt: skip
    return rows
