"""``hieramas emulator``: serve the emulated pool, show its calibration, prepare code bugs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hieramas.emulator.profiles import ProfileError
from hieramas.metricscli import MetricsPortOpt, start_metrics

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The emulated LLM pool: an OpenAI-compatible server of profile-driven fake models.",
)
out = Console()
err = Console(stderr=True)

ProfilesOpt = Annotated[
    Path | None, typer.Option("--profiles", help="Profile YAML (default: the packaged pool).")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Benchmark data dir (default: $HIERAMAS_DATA_DIR, ...)."),
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    profiles: ProfilesOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    latency_scale: Annotated[
        float,
        typer.Option("--latency-scale", min=0.0, help="Multiply simulated latency (0 = instant)."),
    ] = 1.0,
    data_dir: DataDirOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    http: Annotated[
        str, typer.Option(help="HTTP parser: auto (httptools when installed), h11, httptools.")
    ] = "auto",
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Serve ``/v1/models`` and ``/v1/chat/completions`` (replies are labelled emulated)."""
    import uvicorn

    from hieramas.emulator.server import build_app
    from hieramas.logs import configure_logging

    configure_logging(log_level)
    try:
        application = build_app(
            profiles_path=profiles, seed=seed, latency_scale=latency_scale, data_dir=data_dir
        )
    except ProfileError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    start_metrics(metrics_port, "emulator")
    err.print(f"emulated LLM pool on http://{host}:{port}/v1 (seed {seed})")
    uvicorn.run(
        application, host=host, port=port, log_level=log_level, access_log=False, http=http,
        log_config=None,  # uvicorn logs through hieramas.logs (and its redaction), not its own
    )  # fmt: skip


@app.command()
def calibration(profiles: ProfilesOpt = None, data_dir: DataDirOpt = None) -> None:
    """Print each model's calibrated ability and target accuracy per domain."""
    from hieramas.emulator.engine import Engine

    try:
        engine = Engine.create(profiles_path=profiles, data_dir=data_dir, latency_scale=0.0)
    except ProfileError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"emulated pool '{engine.profiles.name}': calibration (emulated)")
    for col in ("model", "domain", "target", "mean p", "θ", "items"):
        table.add_column(col, no_wrap=True)
    for e in engine.skill.calibration:
        table.add_row(
            e.model,
            e.domain,
            f"{e.target:.3f}",
            f"{e.mean_p:.3f}",
            f"{e.theta:+.3f}",
            str(e.n_items),
        )
    out.print(table)


@app.command()
def models(profiles: ProfilesOpt = None) -> None:
    """List the pool's models with prices and target accuracies."""
    from hieramas.emulator.profiles import load_profiles

    try:
        pool = load_profiles(profiles)
    except ProfileError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    domains = list(pool.domains)
    table = Table(title=f"emulated pool '{pool.name}'")
    for col in ("model", "emulates", "$/M in", "$/M out", *domains):
        table.add_column(col, no_wrap=col in ("model", "emulates"))
    for name, m in pool.models.items():
        accs = [f"{m.accuracy[d] * 100:.0f}" for d in domains]
        table.add_row(
            name, m.model_id, f"{m.prices.input_per_m:g}", f"{m.prices.output_per_m:g}", *accs
        )
    out.print(table)


@app.command("prepare-code")
def prepare_code(
    profiles: ProfilesOpt = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N HumanEval items.")] = None,
) -> None:
    """Verify buggy HumanEval variants in the sandbox once and cache them on disk.

    Optional: the server does this lazily per item on first use; running it
    ahead of time keeps the first HumanEval requests fast.
    """
    from hieramas.emulator.codebugs import CodeBugs
    from hieramas.emulator.profiles import load_profiles
    from hieramas.tasks.datasets import DatasetError, load

    try:
        pool = load_profiles(profiles)
        items = load("humaneval", data_dir)
    except (ProfileError, DatasetError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    bugs = CodeBugs(n_variants=pool.behaviour.code_bug_variants)
    chosen = items[:limit] if limit is not None else items
    computed = bugs.prepare(chosen)
    out.print(f"{len(chosen)} items ready ({computed} verified now); cache: {bugs.cache_path}")
