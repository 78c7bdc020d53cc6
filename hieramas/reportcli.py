"""``hieramas report``: a Markdown (or HTML) report with figures of a run directory, a
compare or demo directory, or a bench JSON file (:mod:`hieramas.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["report"]

err = Console(stderr=True)


def report(
    source: Annotated[
        Path,
        typer.Argument(
            help="A train run dir (Stage 1 or 2), a compare or demo dir, or a bench --json file."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where report.md and the PNGs go (default SOURCE/report)."),
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="Also write report.html.")] = False,
) -> None:
    """Write a report with figures: accuracy against cost with the Pareto front, learning
    curves, the DAGs run, the LLM-by-role selection heatmap, a query's latency breakdown."""
    from hieramas.report import SourceError, write_report

    try:
        path = write_report(source, out, html=html)
    except (SourceError, OSError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    print(path)
    if html:
        print(path.with_suffix(".html"))
