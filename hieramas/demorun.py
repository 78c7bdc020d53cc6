"""``hieramas demo``'s phases: data, Stage 1, Stage 2, evaluation with a live policy update,
report.

Each phase reuses the project's own driver and writes into the demo directory (``--out``):

1. **Data.** MMLU-Redux from the resolved data directory (``--data-dir``,
   ``$HIERAMAS_DATA_DIR``, ``shared/datasets`` beside the checkout, else the user cache).
   When it is missing it is fetched into that directory first
   (:func:`hieramas.tasks.download.download`, a progress bar per subject); ``--no-fetch``
   refuses instead (:class:`DemoError`).
2. **Stage 1** (``stage1/``): :func:`hieramas.learner.trainrun.run_training`, an embedded
   stack with a learner process; the best version is kept as ``best.ckpt``.
3. **Stage 2** (``stage2/``): :func:`hieramas.learner.dagrun.run_stage2` with that frozen
   policy: candidate DAGs executed, the classifier trained and published.
4. **Evaluation** (:mod:`hieramas.demoeval`): a live policy update under a query stream,
   then the learned system against baselines on held-out test items (``evaluation.json``).
5. **Report** (``report/``): :func:`hieramas.report.write_report` of the directory.

Stages 1 and 2 resume from their run directories, so the same command continues a demo
that was stopped.  Every figure is EMULATED.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FULL", "QUICK", "Budget", "DemoError", "DemoOptions", "run_demo"]


class DemoError(RuntimeError):
    """The demo cannot run (no data and --no-fetch, a failed fetch, a failed phase)."""


class DemoProgress(Protocol):
    """What the phases report to (:class:`hieramas.progress.ProgressDisplay` is one)."""

    def update(
        self, phase: str, completed: int, total: int | None = None, *, info: str | None = None
    ) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass(frozen=True)
class Budget:
    """How much each phase does."""

    stage1_queries: int
    stage1_batch: int
    stage1_eval_every: int
    stage1_eval_items: int
    stage2_queries: int
    stage2_candidates: int
    stage2_epochs: int
    eval_items: int
    live_queries: int


QUICK = Budget(
    stage1_queries=32, stage1_batch=16, stage1_eval_every=1, stage1_eval_items=10,
    stage2_queries=16, stage2_candidates=3, stage2_epochs=20, eval_items=20, live_queries=16,
)  # fmt: skip
"""``--quick``: about two minutes on 2 cores."""

FULL = Budget(
    stage1_queries=256, stage1_batch=16, stage1_eval_every=4, stage1_eval_items=40,
    stage2_queries=60, stage2_candidates=4, stage2_epochs=40, eval_items=100, live_queries=32,
)  # fmt: skip
"""The default: within ten minutes on 2 cores."""


@dataclass(frozen=True)
class DemoOptions:
    """One demo run."""

    out: Path
    budget: Budget = FULL
    seed: int = 0
    data_dir: Path | None = None
    fetch: bool = True
    concurrency: int = 8
    latency_scale: float = 0.0
    """The emulator's latency factor during the evaluation (training runs at 0)."""
    embedder: str | None = None
    """The query embedder (default: the learner's, all-MiniLM-L6-v2)."""


@dataclass
class _Timer:
    phases: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return action()
        finally:
            self.phases[name] = round(time.monotonic() - started, 1)


def ensure_data(options: DemoOptions, progress: DemoProgress) -> Path:
    """The data directory holding MMLU-Redux, fetched first when it is missing (see the
    module docstring); :class:`DemoError` if it is missing and ``fetch`` is off or fails."""
    import httpx

    from hieramas.tasks.datasets import DatasetError, data_dir, dataset_path
    from hieramas.tasks.download import DownloadError, download

    root = data_dir(options.data_dir)
    if dataset_path("mmlu_redux", root).exists():
        return root
    if not options.fetch:
        raise DemoError(
            f"MMLU-Redux is not in {root} and --no-fetch was given: run without --no-fetch "
            "to fetch it there, run 'hieramas data fetch mmlu_redux', or point "
            "HIERAMAS_DATA_DIR (or --data-dir) at a directory that holds it"
        )
    progress.note(f"MMLU-Redux is not in {root}: fetching it there first")
    try:
        download(
            ["mmlu_redux"], root,
            on_progress=lambda _d, n, total: progress.update("fetch MMLU-Redux (subjects)", n, total),
        )  # fmt: skip
    except (DownloadError, DatasetError, httpx.HTTPError, OSError) as exc:
        raise DemoError(f"fetching MMLU-Redux into {root} failed: {exc}") from None
    return root


def _from_zero(progress: DemoProgress, prefix: str = "") -> Callable[[str, int, int], None]:
    """A ``(phase, n, total)`` callback that starts each new phase at 0: the drivers call
    back after each item, and a phase whose first call says 1 would read as resumed."""
    seen: set[str] = set()
    lock = threading.Lock()

    def update(phase: str, n: int, total: int) -> None:
        name = prefix + phase
        with lock:
            first = name not in seen
            seen.add(name)
        if first and n:
            progress.update(name, 0, total)
        progress.update(name, n, total)

    return update


def _finished_stage1(run_dir: Path, train: Any) -> dict[str, Any] | None:
    """The summary of a Stage-1 run this demo already finished with the same budget and seed
    (a resumed demo need not start its stack again), else None."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    same = (summary.get("seed"), summary.get("batch")) == (train.seed, train.batch)
    enough = int(summary.get("queries") or 0) >= train.queries
    kept = bool(summary.get("best")) and (run_dir / "best.ckpt").exists()
    return dict(summary) if same and enough and kept else None


def _stage1(options: DemoOptions, data: Path, progress: DemoProgress) -> dict[str, Any]:
    from hieramas.learner.driver import TrainOptions
    from hieramas.learner.embeddings import DEFAULT_MODEL
    from hieramas.learner.trainrun import run_training

    b = options.budget
    train = TrainOptions(
        dataset="mmlu", run_dir=options.out / "stage1", queries=b.stage1_queries,
        batch=b.stage1_batch, concurrency=options.concurrency, seed=options.seed,
        reward="multi", eval_every=b.stage1_eval_every, eval_items=b.stage1_eval_items,
        data_dir=data, embedder=options.embedder or DEFAULT_MODEL,
    )  # fmt: skip

    done = _finished_stage1(train.run_dir, train)
    if done is not None:
        progress.note(f"stage 1: {train.run_dir} is finished; kept")
        return done

    def on_event(event: dict[str, Any]) -> None:
        best = event.get("best") or {}
        info = f"policy v{event.get('version') or '–'}"
        if best:
            info += f", best v{best['version']} (validation accuracy {best['accuracy']:.2f})"
        progress.update("stage 1: training queries", event["counted"], event["total"], info=info)

    return dict(run_training(train, on_event))


def _stage2(options: DemoOptions, data: Path, progress: DemoProgress) -> dict[str, Any]:
    from hieramas.learner.dagrun import Stage2Options, run_stage2

    b = options.budget
    stage2 = Stage2Options(
        dataset="mmlu", run_dir=options.out / "stage2", stage1=options.out / "stage1",
        queries=b.stage2_queries, candidates=b.stage2_candidates,
        concurrency=options.concurrency, seed=options.seed, data_dir=data,
        epochs=b.stage2_epochs,
    )  # fmt: skip
    names = {"data": "candidate DAGs (queries)", "train": "classifier (losses)"}
    update = _from_zero(progress, "stage 2: ")
    return dict(run_stage2(stage2, lambda phase, n, t: update(names.get(phase, phase), n, t)))


def _evaluate(options: DemoOptions, data: Path, progress: DemoProgress) -> dict[str, Any]:
    from hieramas.benchcli import load_items
    from hieramas.demoeval import EvalPlan, evaluate_demo

    test, _ = load_items("mmlu", "test", None, options.seed, data)
    n = min(options.budget.eval_items, len(test))
    items = random.Random(options.seed).sample(list(test), n)
    plan = EvalPlan(
        out=options.out, stage1=options.out / "stage1", stage2=options.out / "stage2",
        items=items, live=min(options.budget.live_queries, n), seed=options.seed,
        concurrency=options.concurrency, latency_scale=options.latency_scale,
    )  # fmt: skip
    return evaluate_demo(plan, _from_zero(progress))


def _report(out: Path, progress: DemoProgress) -> str | None:
    try:
        from hieramas.report import write_report

        return str(write_report(out))
    except Exception as exc:  # the run directory is complete without it: say so, carry on
        progress.note(f"no report: {type(exc).__name__}: {exc}")
        return None


def _preload(embedder: str | None) -> None:
    """Load the embedder in the background: the controller's planner and Stage 2 need it,
    and it takes seconds, which the first phases can hide."""
    from hieramas.learner.embedder_names import embedder_for
    from hieramas.learner.embeddings import DEFAULT_MODEL

    embedder = embedder or DEFAULT_MODEL

    def load() -> None:
        with contextlib.suppress(Exception):  # the phase that needs it reports the failure
            embedder_for(embedder)

    threading.Thread(target=load, name="demo-embedder", daemon=True).start()


def run_demo(options: DemoOptions, progress: DemoProgress) -> dict[str, Any]:
    """Run every phase (see the module docstring); the demo's summary (``demo.json``)."""
    from hieramas.tasks.datasets import DATA_DIR_ENV, DatasetError

    out = options.out
    load_before = os.getloadavg()
    timer = _Timer()
    started = time.monotonic()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars
    data = timer.run("data", lambda: ensure_data(options, progress))  # before torch loads
    out.mkdir(parents=True, exist_ok=True)
    _preload(options.embedder)
    os.environ[DATA_DIR_ENV] = str(data)  # the emulator and learner processes read it too
    options = replace(options, data_dir=data)
    from hieramas.demoeval import EvalError
    from hieramas.learner.driver import DriverError

    try:
        progress.note("stage 1: training the LLM-selection policy (embedded stack + learner)")
        stage1 = timer.run("stage1", lambda: _stage1(options, data, progress))
        progress.note("stage 2: candidate DAGs under the frozen policy, then the classifier")
        stage2 = timer.run("stage2", lambda: _stage2(options, data, progress))
        progress.note("evaluation: a live policy update, then held-out items per method")
        evaluation = timer.run("evaluation", lambda: _evaluate(options, data, progress))
    except (DriverError, DatasetError, EvalError, ValueError) as exc:
        raise DemoError(str(exc)) from None
    methods = evaluation["methods"]
    (out / "evaluation.json").write_text(json.dumps(methods, indent=1))
    (out / "live_update.json").write_text(json.dumps(evaluation["live"], indent=1))
    summary: dict[str, Any] = {
        "emulated": True,
        "dataset": "mmlu_redux",
        "data_dir": str(data),
        "seed": options.seed,
        "budget": asdict(options.budget),
        "latency_scale": options.latency_scale,
        "embedder": json.loads((out / "stage1" / "run.json").read_text()).get("embedder"),
        "stage1": {"best": stage1.get("best"), "queries": stage1.get("queries")},
        "stage2": {
            "winner": stage2.get("winner"),
            "training": stage2.get("training"),
            "data": stage2.get("data"),
            "reuse": stage2.get("reuse"),
        },
        "methods": methods,
        "live": {k: v for k, v in evaluation["live"].items() if k != "sequence"},
    }
    summary["report"] = timer.run("report", lambda: _report(out, progress))
    summary["seconds"] = {**timer.phases, "total": round(time.monotonic() - started, 1)}
    summary["load_average"] = {"start": load_before, "end": os.getloadavg()}
    (out / "demo.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
