"""``--metrics-port``: the one option every long-running command takes to serve ``/metrics``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

__all__ = ["MetricsPortOpt", "start_metrics"]

MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus /metrics on this port (0: a free one, printed); off unless given. "
        "Binds $HIERAMAS_METRICS_ADDR (default 127.0.0.1).",
    ),
]


def start_metrics(port: int | None, what: str) -> int | None:
    """Serve this process's metrics if ``port`` is given; says where on stderr."""
    if port is None:
        return None
    from hieramas.metrics import serve_metrics

    try:
        bound = serve_metrics(port)
    except OSError as exc:
        Console(stderr=True).print(f"[red]metrics port {port}: {exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    Console(stderr=True).print(f"{what} metrics on port {bound} (/metrics)", highlight=False)
    return bound
