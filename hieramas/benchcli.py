"""``hieramas bench``: run baseline methods and HieraMAS variants through one runtime, graded.

One embedded stack (or ``--nats URL``) serves every method; each method's config is applied
in turn and the dataset items go through the real gateway, actors and LLM endpoints.  By
default the LLMs are the embedded *emulator* (figures are labelled EMULATED); ``--local``
serves the real local llama.cpp models instead (their prices are notional).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
import yaml
from rich.console import Console
from rich.table import Table

from hieramas.benchfile import BenchFile, ResumeError
from hieramas.controller.client import HieraClient
from hieramas.controller.config import ConfigError, parse_config
from hieramas.evaluation import EvalReport, ItemResult, evaluate
from hieramas.llm.local.errors import LocalModelError
from hieramas.processes import unwind_on_signals
from hieramas.progress import ProgressDisplay
from hieramas.tasks import baselines, datasets
from hieramas.tasks.datasets import Item

__all__ = ["DATASETS", "MethodRun", "bench", "load_items", "parse_method", "plan_methods"]

log = structlog.get_logger(__name__)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

DATASETS: dict[str, tuple[str, str]] = {
    "mmlu": ("mmlu_redux", "mmlu"),
    "math": ("math500", "math"),
    "gsm8k": ("gsm8k", "gsm8k"),
    "humaneval": ("humaneval", "humaneval"),
}
"""CLI dataset name -> (dataset file name, prompt domain)."""

SPLITS = ("test", "validation", "train", "all")


@dataclass(frozen=True)
class MethodRun:
    """One method to run: its label and its config YAML text."""

    label: str
    yaml_text: str
    notional_prices: bool


def parse_method(spec: str) -> tuple[str, str | None]:
    """``METHOD`` or ``METHOD@MODEL`` -> (method, model or None)."""
    method, _, model = spec.partition("@")
    if method not in baselines.METHODS:
        raise baselines.BaselineError(
            f"unknown method {method!r}; known: {', '.join(baselines.METHODS)}"
        )
    return method, (model or None)


def load_items(
    dataset: str, split: str, limit: int | None, seed: int, data_dir: Path | None
) -> tuple[list[Item], str]:
    """The first ``limit`` items of ``split`` (seeded split; ``all`` = the file's order)."""
    if dataset not in DATASETS:
        raise datasets.DatasetError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise datasets.DatasetError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    name = DATASETS[dataset][0]
    items = datasets.load(name, data_dir)
    chosen = (
        list(items) if split == "all" else list(getattr(datasets.split(items, seed=seed), split))
    )
    return chosen[:limit] if limit else chosen, f"{name}/{split}"


def plan_methods(
    specs: Sequence[str],
    pool: baselines.Pool,
    domain: str,
    opts: baselines.Options,
    configs: Sequence[tuple[str, str]] = (),
) -> list[MethodRun]:
    """Build (and validate) the config of every requested method and every extra config."""
    runs: list[MethodRun] = []
    for spec in specs:
        method, model = parse_method(spec)
        method_opts = baselines.Options(**{**opts.__dict__, "model": model or opts.model})
        doc = baselines.build(method, pool, domain, method_opts)
        text = baselines.to_yaml(doc)
        config = parse_config(text)
        runs.append(MethodRun(spec, text, any(c.notional_prices for c in config.llms.values())))
    for label, text in configs:
        config = parse_config(text)
        runs.append(MethodRun(label, text, any(c.notional_prices for c in config.llms.values())))
    return runs


def _retarget(text: str, base_url: str) -> str:
    """A user config with every non-emulator endpoint pointed at ``base_url`` (for ``--local``)."""
    doc = yaml.safe_load(text)
    for endpoint in doc.get("endpoints", {}).values():
        if endpoint.get("kind", "openai") != "emulator":
            endpoint["base_url"] = base_url
    return yaml.safe_dump(doc, sort_keys=False)


@contextmanager
def _local_server(local: bool, models: Sequence[str] | None) -> Iterator[str | None]:
    if not local:
        yield None
        return
    from hieramas.llm.local import running_local_server

    with running_local_server(models=list(models) if models else None) as base_url:
        yield base_url


def _table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        "method", "n", "accuracy", "95% CI", "cost $/query", "tokens/query",
        "p50 s", "p95 s", "wall s", "errors", "emulated", "notional $",
    )  # fmt: skip
    for s in rows:
        low, high = s["ci95"]
        table.add_row(
            s["method"], str(s["n"]), f"{s['accuracy']:.3f}", f"{low:.3f}-{high:.3f}",
            f"{s['cost_per_query_usd']:.3g}", f"{s['tokens_per_query']:.0f}",
            f"{s['latency_p50_s']:.2f}", f"{s['latency_p95_s']:.2f}", f"{s['wall_s']:.1f}",
            str(s["errors"]), "yes" if s["emulated"] else "no",
            "yes" if s["notional_prices"] else "no",
        )  # fmt: skip
    return table


def bench(
    dataset: Annotated[str, typer.Argument(help="mmlu, math, gsm8k or humaneval.")],
    split: Annotated[str, typer.Option(help="test, validation, train, or all (file order).")] = (
        "test"
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="First N items of the split.")] = None,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", "-m", help="METHOD or METHOD@MODEL (repeatable; default all)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1)] = 8,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write summaries and per-item rows here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Split seed, emulator seed and DAG seed.")] = 0,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated pool (first = default model).")
    ] = None,
    nats: Annotated[
        str | None, typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="Existing NATS URL.")
    ] = None,
    config: Annotated[
        list[Path] | None, typer.Option("--config", "-c", help="Extra config YAML to run.")
    ] = None,
    local: Annotated[bool, typer.Option(help="Real local llama.cpp models.")] = False,
    data_dir: Annotated[Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR")] = None,
    k: Annotated[int, typer.Option(min=1, help="Self-consistency samples.")] = 5,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.7,
    proposers: Annotated[
        str | None, typer.Option(help="Comma-separated proposers (moa, debate).")
    ] = None,
    aggregator: Annotated[str | None, typer.Option(help="MoA aggregator LLM.")] = None,
    layers: Annotated[int, typer.Option(min=1, help="MoA layers.")] = 2,
    decision: Annotated[str | None, typer.Option(help="HieraMAS decision LLM.")] = None,
    proposers_per_node: Annotated[int, typer.Option(min=1)] = 2,
    density: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    timeout: Annotated[float | None, typer.Option(help="Query deadline in seconds.")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the --json file: items it already graded are not asked again "
            "(errors are retried); --limit may grow.",
        ),
    ] = False,
) -> None:
    """Run methods on DATASET through one runtime and print accuracy, cost, tokens, latency."""
    from hieramas.stack import Stack
    from hieramas.tasks.sandbox import Sandbox

    try:
        items, dataset_label = load_items(dataset, split, limit, seed, data_dir)
    except datasets.DatasetError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    domain = DATASETS[dataset][1]
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    query_timeout = timeout or (900.0 if local else 120.0)
    opts = baselines.Options(
        k=k,
        temperature=temperature,
        proposers=tuple(p.strip() for p in (proposers or "").split(",") if p.strip()),
        aggregator=aggregator,
        layers=layers,
        decision=decision,
        seed=seed,
        density=density,
        proposers_per_node=proposers_per_node,
        max_tokens=max_tokens or (384 if local else 1024),
        query_timeout_s=query_timeout,
        node_timeout_s=query_timeout * (2 / 3 if local else 0.5),
    )
    specs = list(method) if method else ([] if config else list(baselines.METHODS))
    if resume and json_file is None:
        err.print("[red]--resume needs --json FILE[/red]")
        raise typer.Exit(2)
    summaries: list[dict[str, Any]] = []
    options = {
        "methods": specs, "split": split, "local": local, "models": model_list,
        "configs": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in config or []
                    if p.is_file()},
        **{k: v for k, v in asdict(opts).items() if k not in ("query_timeout_s", "node_timeout_s")},
    }  # fmt: skip
    try:
        results = (
            BenchFile.resume(json_file, dataset_label, seed, options)
            if resume and json_file is not None
            else BenchFile(json_file, dataset_label, seed, json.loads(json.dumps(options)))
            if json_file is not None
            else None
        )
    except ResumeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        with _local_server(local, model_list) as base_url:
            if base_url is not None:
                pool = baselines.local_pool(base_url, model_list, max_concurrency=2)
            else:
                pool = baselines.emulated_pool(model_list)
            extra = []
            for path in config or []:
                text = path.read_text()
                extra.append(
                    (f"config:{path.name}", _retarget(text, base_url) if base_url else text)
                )
            runs = plan_methods(specs, pool, domain, opts, extra)
            emulated = any(parse_config(r.yaml_text).uses_emulator() for r in runs)
            unwind_on_signals()  # a killed run still stops its embedded servers
            stack_ctx = Stack(nats_url=nats, emulator=emulated, emulator_seed=seed)
            sandbox = Sandbox() if domain == "humaneval" else None
            err.print(
                f"{len(items)} items of {dataset_label} (split seed {seed}); "
                f"{len(runs)} methods; {'EMULATED LLMs, emulator seed ' + str(seed) if emulated else 'real LLMs at ' + str(base_url)}"
            )
            with stack_ctx as stack, ProgressDisplay(err) as shown:
                assert stack.bus is not None
                client = HieraClient(stack.bus)
                for run in runs:
                    version = stack.bus.call(client.apply_config(run.yaml_text, source="bench"), 30)
                    started = time.monotonic()
                    wanted = {item.id for item in items}
                    prior = [r for r in results.done(run.label) if r.item_id in wanted] if (
                        results and resume
                    ) else []  # fmt: skip
                    earlier_wall = results.wall_s.get(run.label, 0.0) if results and resume else 0.0
                    graded = {r.item_id for r in prior}
                    todo = [item for item in items if item.id not in graded]
                    if prior:
                        many = "s" if len(prior) != 1 else ""
                        shown.note(
                            f"  {run.label}: {len(prior)} graded item{many} from {json_file}"
                        )
                    shown.update(run.label, len(prior), len(items))  # where this method starts

                    def progress(
                        row: ItemResult, label: str = run.label,
                        since: float = started, before: float = earlier_wall,
                    ) -> None:  # fmt: skip
                        shown.advance(label, total=len(items))
                        if results is not None:  # a killed run keeps its finished items
                            results.add(label, row, before + time.monotonic() - since)

                    report: EvalReport = stack.bus.call(
                        evaluate(
                            client, todo, method=run.label, dataset=dataset_label,
                            concurrency=concurrency, timeout_s=query_timeout,
                            sandbox=sandbox, split_seed=seed, on_result=progress,
                        ),
                        timeout=None,
                    )  # fmt: skip
                    order = {item.id: i for i, item in enumerate(items)}
                    report.results = sorted(
                        [*prior, *report.results], key=lambda r: order[r.item_id]
                    )
                    summary = report.summary()
                    summary.update(
                        wall_s=earlier_wall + time.monotonic() - started,
                        resumed_items=len(prior),
                        notional_prices=run.notional_prices,
                        config_version=version,
                        config_yaml=run.yaml_text,
                        emulator_seed=seed if report.emulated else None,
                    )
                    summaries.append(summary)
                    err.print(
                        f"{run.label}: {summary['accuracy']:.3f} on {summary['n']} "
                        f"({summary['wall_s']:.0f}s)",
                        highlight=False,
                    )
                    if results is not None:
                        results.finish(summary, report.results)
    except (baselines.BaselineError, ConfigError, LocalModelError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    out.print(_table(summaries))
    if any(s["emulated"] for s in summaries):
        out.print(
            f"EMULATED: these figures describe the emulator, not real models "
            f"(emulator seed {seed}, split seed {seed}).",
            highlight=False,
        )
    if any(s["notional_prices"] for s in summaries):
        out.print("Costs use NOTIONAL prices (proportional to parameter count).", highlight=False)
    if json_file is not None:
        out.print(f"report: hieramas report {json_file}", highlight=False)
