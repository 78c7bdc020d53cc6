"""``hieramas train --stage 1`` (the training driver, with a progress display) and ``hieramas compare``.

torch is imported only when a command runs, not when the CLI loads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hieramas.progress import ProgressDisplay
from hieramas.traineroptions import (
    DEFAULT,
    DEFAULT_ALPHA,
    DEFAULT_LAM,
    AdvantageScaleOpt,
    AlphaOpt,
    DistinctProposersOpt,
    DroppedCreditOpt,
    EntropyCoefOpt,
    GroupOpt,
    KindColumnsOpt,
    LamOpt,
    LrOpt,
    ProposerSkipOpt,
    SlotActionsOpt,
    SynthesizerSkipOpt,
    TempEndOpt,
    TempStartOpt,
    TempUpdatesOpt,
    hyper_or_exit,
)

__all__ = ["compare", "train", "trap"]

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


class _Display:
    """The run's progress over its query budget (:mod:`hieramas.progress`: a live bar on a
    terminal, periodic plain lines otherwise), with the run's live figures after it."""

    def __init__(self, total: int, label: str = "train") -> None:
        self.progress = ProgressDisplay(err)
        self.total = total
        self.label = label
        """The phase shown (the trap sets one per run)."""
        self.fields: dict[str, Any] = {
            "iteration": 0, "reward": "–", "accuracy": "–", "cost": "–", "version": "–",
            "val": "–", "best": "–",
        }  # fmt: skip

    def __call__(self, event: dict[str, Any]) -> None:
        fields = self.fields
        fields["iteration"] = event["iteration"]
        if event.get("version") is not None:
            fields["version"] = event["version"]
        if "mean_reward" in event:
            fields["reward"] = _fmt(event["mean_reward"], "+.3f")
        if "accuracy" in event:
            fields["accuracy"] = _fmt(event["accuracy"], ".3f")
        if "cost" in event:
            fields["cost"] = _fmt(event["cost"], ".2e")
        if "eval_accuracy" in event:
            fields["val"] = f"{event['eval_accuracy']:.3f}@v{event['eval_version']}"
        best = event.get("best")
        if best:
            fields["best"] = f"v{best['version']} {best['accuracy']:.3f}"
        self.progress.update(
            self.label,
            event["counted"],
            event.get("total", self.total),
            info=f"{event['phase']} it {fields['iteration']} reward {fields['reward']} "
            f"acc {fields['accuracy']} $/q {fields['cost']} policy v{fields['version']} "
            f"val {fields['val']} best {fields['best']}",
        )


def train(
    stage: Annotated[int, typer.Option(help="1: LLM selection; 2: topology (needs --stage1).")] = 1,
    dataset: Annotated[str, typer.Option(help="mmlu, math, gsm8k or humaneval.")] = "mmlu",
    queries: Annotated[int, typer.Option(min=1, help="Training queries (the budget).")] = 2000,
    batch: Annotated[int, typer.Option(min=1, help="Queries per iteration and update.")] = 16,
    concurrency: Annotated[int, typer.Option(min=1, help="Queries in flight.")] = 8,
    seed: Annotated[int, typer.Option(help="Split, item order, emulator, policy seed.")] = 0,
    reward: Annotated[str, typer.Option(help="multi (multi-level) or final (ablation).")] = "multi",
    run_dir: Annotated[
        Path, typer.Option(help="State, metrics and checkpoints; resumable.")
    ] = Path("runs/train"),
    config: Annotated[
        Path | None, typer.Option(help="Config YAML (default: the dataset's, see below).")
    ] = None,
    eval_every: Annotated[
        int, typer.Option(min=0, help="Evaluate every K iterations (0: at the end only).")
    ] = 5,
    eval_items: Annotated[int, typer.Option(min=1, help="Validation items per evaluation.")] = 100,
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats", envvar="HIERAMAS_NATS_URL", help="A running system (else embedded)."
        ),
    ] = None,
    embedder: Annotated[str, typer.Option(help="Embedder (hash-<dim> for smoke runs).")] = (
        "all-MiniLM-L6-v2"
    ),
    profiles: Annotated[
        Path | None, typer.Option(help="Emulator profile file (embedded stack).")
    ] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated pool subset.")] = None,
    roles: Annotated[int | None, typer.Option(min=1, help="Only the first N roles.")] = None,
    edges: Annotated[str, typer.Option(help="full (complete DAG) or none.")] = "full",
    proposers: Annotated[
        int, typer.Option(min=1, help="Proposer slots per supernode (each may be skipped).")
    ] = 2,
    llm_temperature: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=2.0,
            help="The LLMs' sampling temperature (0: a model repeated in a supernode answers "
            "as one call; > 0: independent samples, as in self-consistency).",
        ),
    ] = 0.0,
    alpha: AlphaOpt = DEFAULT_ALPHA,
    lam: LamOpt = DEFAULT_LAM,
    local: Annotated[
        bool, typer.Option(help="REAL local llama.cpp models (a small config; NOTIONAL prices).")
    ] = False,
    holdout: Annotated[
        int, typer.Option(min=0, help="Train and validate without the dataset's first N items.")
    ] = 0,
    data_dir: Annotated[Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR")] = None,
    learner_wait: Annotated[
        float, typer.Option(help="Seconds to wait for the learner's version per iteration.")
    ] = 60.0,
    decode: Annotated[
        str, typer.Option(help="How evaluations decode: greedy or rotation (top-n rotation).")
    ] = "greedy",
    eval_spread: Annotated[
        bool,
        typer.Option(
            help="Validate on --eval-items spread evenly over the validation split (every "
            "subject), not its first ones."
        ),
    ] = False,
    select: Annotated[
        str,
        typer.Option(
            help="Which evaluated version is kept: best (most accurate, then cheapest) or paired "
            "(the cheapest not significantly below the most accurate, paired on the items)."
        ),
    ] = "best",
    entropy_coef: EntropyCoefOpt = DEFAULT.entropy_coef,
    lr: LrOpt = DEFAULT.lr,
    temp_start: TempStartOpt = DEFAULT.temp_start,
    temp_end: TempEndOpt = DEFAULT.temp_end,
    temp_updates: TempUpdatesOpt = DEFAULT.temp_updates,
    slot_actions: SlotActionsOpt = DEFAULT.slot_actions,
    group: GroupOpt = DEFAULT.group,
    synthesizer_skip: SynthesizerSkipOpt = DEFAULT.synthesizer_skip,
    proposer_skip: ProposerSkipOpt = DEFAULT.proposer_skip,
    advantage_scale: AdvantageScaleOpt = DEFAULT.advantage_scale,
    kind_columns: KindColumnsOpt = DEFAULT.kind_columns,
    distinct_proposers: DistinctProposersOpt = DEFAULT.distinct_proposers,
    dropped_credit: DroppedCreditOpt = DEFAULT.dropped_credit,
    stage1: Annotated[
        Path | None,
        typer.Option(help="Stage 2: the frozen Stage-1 run directory (best.ckpt, config.yaml)."),
    ] = None,
    candidates: Annotated[
        int, typer.Option(min=2, help="Stage 2: candidate DAGs executed per training query.")
    ] = 5,
    skip_roles: Annotated[
        int, typer.Option(min=0, help="Stage 2: also evaluate with up to K roles skipped.")
    ] = 0,
    edge_baseline: Annotated[
        bool, typer.Option(help="Stage 2: also train and evaluate the per-edge REINFORCE baseline.")
    ] = False,
    vote_k: Annotated[
        int,
        typer.Option(min=0, help="Stage 2: also evaluate the top-K DAGs with a vote (K ≥ 2)."),
    ] = 0,
) -> None:
    """Train the Stage-1 policy online: training queries through the live runtime, a learner
    process learning from their traces, greedy validation, the best version kept.

    The default config of a dataset is every role of its domain, two proposers each, the
    complete DAG, the whole emulated pool, and the pool's strongest model as the decision
    LLM (see hieramas.learner.trainconfig).  Without --nats the LLMs are EMULATED;
    with --local they are the REAL local llama.cpp models, on a config small enough for a
    CPU (see hieramas.learner.localtrain).
    """
    from hieramas.learner.driver import DriverError, TrainOptions
    from hieramas.learner.trainrun import run_training
    from hieramas.processes import unwind_on_signals
    from hieramas.tasks.datasets import DatasetError

    if stage == 2:
        _train_stage2(dataset, run_dir, stage1, queries, candidates, concurrency, seed,
                      eval_items, data_dir, skip_roles, edge_baseline, vote_k, nats)  # fmt: skip
        return
    if stage != 1:
        err.print(f"[red]--stage must be 1 or 2, not {stage}[/red]")
        raise typer.Exit(2)
    if reward not in ("multi", "final"):
        err.print(f"[red]--reward must be multi or final, not {reward!r}[/red]")
        raise typer.Exit(2)
    if decode not in ("greedy", "rotation"):
        err.print(f"[red]--decode must be greedy or rotation, not {decode!r}[/red]")
        raise typer.Exit(2)
    if select not in ("best", "paired"):
        err.print(f"[red]--select must be best or paired, not {select!r}[/red]")
        raise typer.Exit(2)
    if dataset not in ("mmlu", "math", "gsm8k", "humaneval"):
        err.print(f"[red]unknown dataset {dataset!r}[/red]")
        raise typer.Exit(2)
    options = TrainOptions(
        dataset=dataset,
        run_dir=run_dir,
        queries=queries,
        batch=batch,
        concurrency=concurrency,
        seed=seed,
        reward=reward,
        eval_every=eval_every,
        eval_items=eval_items,
        eval_spread=eval_spread,
        config=config,
        nats=nats,
        embedder=embedder,
        profiles=str(profiles) if profiles else None,
        models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
        roles=roles,
        edges=edges,
        proposers=proposers,
        llm_temperature=llm_temperature,
        alpha=alpha,
        lam=lam,
        data_dir=data_dir,
        local=local,
        holdout=holdout,
        timeout_s=900.0 if local else 120.0,
        learner_wait_s=learner_wait,
        hyper=hyper_or_exit(
            err,
            entropy_coef=entropy_coef,
            lr=lr,
            temp_start=temp_start,
            temp_end=temp_end,
            temp_updates=temp_updates,
            slot_actions=slot_actions,
            group=group,
            synthesizer_skip=synthesizer_skip,
            proposer_skip=proposer_skip,
            advantage_scale=advantage_scale,
            kind_columns=kind_columns,
            distinct_proposers=distinct_proposers,
            dropped_credit=dropped_credit,
        ),
        decode=decode,
        select=select,  # type: ignore[arg-type]  # checked above
    )
    unwind_on_signals()  # SIGTERM/SIGHUP stop the embedded stack (the learner saves) like Ctrl-C
    display = _Display(queries)
    try:
        with display.progress:
            summary = run_training(options, display)
    except (DriverError, DatasetError, OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    best = summary.get("best") or {}
    out.print(
        f"{summary['queries']} training queries in {summary['iterations']} iterations; "
        f"best version v{best.get('version')} (validation accuracy "
        f"{_fmt(best.get('accuracy'), '.3f')}, ${_fmt(best.get('cost_per_query_usd'), '.3g')}"
        f"/query) is current; run dir {run_dir}",
        highlight=False,
    )
    if local:
        out.print("REAL local models; costs use NOTIONAL prices (proportional to parameters).")
    elif nats is None:
        out.print("EMULATED: these figures describe the emulator, not real models.")
    out.print(f"report: hieramas report {run_dir}", highlight=False)


def _train_stage2(
    dataset: str,
    run_dir: Path,
    stage1: Path | None,
    queries: int,
    candidates: int,
    concurrency: int,
    seed: int,
    eval_items: int,
    data_dir: Path | None,
    skip_roles: int = 0,
    edge_baseline: bool = False,
    vote_k: int = 0,
    nats: str | None = None,
) -> None:
    """``train --stage 2``: see :mod:`hieramas.learner.dagrun`."""
    from hieramas.learner.dagrun import Stage2Options, run_stage2
    from hieramas.processes import unwind_on_signals
    from hieramas.tasks.datasets import DatasetError

    if stage1 is None or not (stage1 / "best.ckpt").exists():
        err.print("[red]--stage 2 needs --stage1 RUN_DIR: a Stage-1 run with best.ckpt[/red]")
        raise typer.Exit(2)
    options = Stage2Options(
        dataset=dataset, run_dir=run_dir, stage1=stage1, queries=queries,
        candidates=candidates, concurrency=concurrency, seed=seed,
        eval_items=eval_items, data_dir=data_dir, skip_roles=skip_roles,
        edge_baseline=edge_baseline, vote_k=vote_k, nats=nats,
    )  # fmt: skip
    unwind_on_signals()
    with ProgressDisplay(err) as progress:
        try:
            summary = run_stage2(options, progress)
        except (DatasetError, OSError, ValueError) as exc:
            err.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from None
    reuse = summary["reuse"]
    out.print(
        f"data: {summary['data']['queries']} queries, {summary['data']['candidates']} candidates, "
        f"{summary['data']['positives']} positive; reused {reuse['calls_reused']} calls "
        f"(${reuse['usd_saved']:.4f}) of {reuse['calls_reused'] + reuse['calls_paid']} "
        f"(${reuse['usd_saved'] + reuse['usd_paid']:.4f})",
        highlight=False,
    )
    for loss, r in summary["training"].items():
        out.print(
            f"{loss}: validation AUC {_fmt(r.get('auc'), '.3f')}, top-1 {_fmt(r.get('top1'), '.3f')}"
            f" (random top-1 {_fmt(r.get('top1_random'), '.3f')}), epoch {r['best_epoch']}",
            highlight=False,
        )
    out.print(
        f"kept {summary['winner']}; published classifier v{summary['published_version']}",
        highlight=False,
    )
    for method, s in (summary.get("eval") or {}).items():
        out.print(
            f"  Stage 1 + {method:16s} acc {s['accuracy']:.3f} "
            f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]  "
            f"${s['cost_per_query_usd']:.4f}/query  p50 {s['latency_p50_s']:.2f}s "
            f"p95 {s['latency_p95_s']:.2f}s  edges {s['edges_mean']:.1f}",
            highlight=False,
        )
    if nats is None:
        out.print("EMULATED: these figures describe the emulator, not real models.")
    else:  # the running stack's workers served every call: this run's cache saw none
        out.print("Run on the stack at --nats: response reuse not measured.")
    out.print(f"report: hieramas report {run_dir}", highlight=False)


def compare(
    run_dir: Annotated[Path, typer.Argument(help="A finished training run (its best.ckpt).")],
    ablation: Annotated[
        Path | None,
        typer.Option(help="The final-reward-only run with the same budget and seed."),
    ] = None,
    split: Annotated[str, typer.Option(help="test, validation or train.")] = "test",
    limit: Annotated[int, typer.Option(min=1, help="First N items of the split.")] = 500,
    concurrency: Annotated[int, typer.Option(min=1)] = 8,
    k: Annotated[int, typer.Option(min=1, help="Self-consistency samples.")] = 5,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where compare.json/.jsonl/.png go (RUN_DIR/compare).")
    ] = None,
    profiles: Annotated[
        Path | None, typer.Option(help="Emulator profiles (default: the run's).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR")] = None,
    rotation: Annotated[
        bool, typer.Option(help="Also evaluate the learned versions with top-n rotation.")
    ] = False,
) -> None:
    """Evaluate a run's best policy version against the baselines on the same items:
    random slot assignment, every slot on the strongest / cheapest model, self-consistency on
    the strongest, and (--ablation) the final-reward-only policy.  Resumable; EMULATED."""
    from rich.table import Table

    from hieramas.learner.compare import CompareOptions, run_compare
    from hieramas.learner.driver import DriverError
    from hieramas.processes import unwind_on_signals
    from hieramas.tasks.datasets import DatasetError

    options = CompareOptions(
        run_dir=run_dir,
        ablation=ablation,
        split=split,
        limit=limit,
        concurrency=concurrency,
        k=k,
        out_dir=out_dir,
        profiles=str(profiles) if profiles else None,
        data_dir=data_dir,
        rotation=rotation,
    )
    unwind_on_signals()
    try:
        with ProgressDisplay(err) as progress:
            doc = run_compare(options, progress)
    except (DriverError, DatasetError, OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    table = Table("method", "n", "accuracy", "95% CI", "cost $/query", "errors", "Pareto")
    for s in doc["summaries"]:
        low, high = s["ci95"]
        table.add_row(
            s["method"], str(s["n"]), f"{s['accuracy']:.3f}", f"{low:.3f}-{high:.3f}",
            f"{s['cost_per_query_usd']:.3g}", str(s["errors"]),
            "*" if s["method"] in doc["pareto_front"] else "",
        )  # fmt: skip
    out.print(table)
    where = options.out
    out.print(f"{where}/compare.json, {where}/compare.png", highlight=False)
    out.print(
        f"EMULATED: these figures describe the emulator ({doc['profiles']}, seed "
        f"{doc['emulator_seed']}), not real models.",
        highlight=False,
    )


def trap(
    out_dir: Annotated[Path, typer.Option(help="One run directory per (reward, seed) inside.")] = (
        Path("runs/trap")
    ),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (at least 3).")] = "0,1,2",
    queries: Annotated[int, typer.Option(min=1, help="Training queries per run.")] = 400,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    concurrency: Annotated[int, typer.Option(min=1)] = 8,
    roles: Annotated[int, typer.Option(min=1, help="MMLU roles, in parallel.")] = 4,
    eval_items: Annotated[int, typer.Option(min=1, help="Validation items of the final eval.")] = (
        100
    ),
    embedder: Annotated[str, typer.Option(help="Embedder (hash-<dim> for smoke runs).")] = (
        "all-MiniLM-L6-v2"
    ),
    data_dir: Annotated[Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR")] = None,
) -> None:
    """The credit-assignment trap: train multi-level and final-only policies on a pool with a
    cheap, weak model beside strong ones, for each seed, and report how often each final
    policy still picks the weak model.  Resumable; EMULATED."""
    from rich.table import Table

    from hieramas.learner.driver import DriverError
    from hieramas.learner.trap import TrapOptions, format_rows, run_trap
    from hieramas.processes import unwind_on_signals
    from hieramas.tasks.datasets import DatasetError

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        err.print(f"[red]--seeds must be comma-separated integers, not {seeds!r}[/red]")
        raise typer.Exit(2) from None
    options = TrapOptions(
        out_dir=out_dir, seeds=seed_list, queries=queries, batch=batch,
        concurrency=concurrency, roles=roles, eval_items=eval_items, embedder=embedder,
        data_dir=data_dir,
    )  # fmt: skip
    unwind_on_signals()
    display = _Display(queries)

    def on_run(reward: str, seed: int) -> None:
        display.label = f"{reward} seed {seed}"  # each run its own bar

    try:
        with display.progress:
            report = run_trap(options, on_run, display)
    except (DriverError, DatasetError, OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    table = Table(
        "reward", "seed", "weak synth", "weak proposer", "weak all", "weak / LLM slots",
        "sampled first",
        "sampled last", "val acc", "val $/query",
        title=f"share of slots on {report['weak_model']} (greedy, final version)",
    )  # fmt: skip
    for row in format_rows(report):
        table.add_row(*row)
    out.print(table)
    uniform = report["uniform_share"]
    out.print(
        f"uniform policy: {uniform['synthesizer']:.3f} of synthesizer, "
        f"{uniform['proposer']:.3f} of proposer slots.  {out_dir}/trap.json",
        highlight=False,
    )
    out.print("EMULATED: these figures describe the emulator, not real models.")
