"""``hieramas traces export``: send the trace stream to an OpenTelemetry backend (OTLP/HTTP)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from hieramas.bus import Bus
from hieramas.metricscli import MetricsPortOpt, start_metrics
from hieramas.natsconn import NatsSettings
from hieramas.processes import stop_on_signals

__all__ = ["traces_export"]

err = Console(stderr=True)


def traces_export(
    nats: Annotated[
        str | None,
        typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="NATS URL of a running system."),
    ] = None,
    durable: Annotated[
        str, typer.Option(help="Durable consumer name: one per backend; resumes where it was.")
    ] = "hieramas-otel-export",
    start: Annotated[
        str,
        typer.Option(
            help="Where a new consumer starts: 'all' (the stored stream), 'new', or a stream "
            "sequence number.",
        ),
    ] = "all",
    reset: Annotated[
        bool, typer.Option(help="Recreate the durable consumer at --start (replay).")
    ] = False,
    content: Annotated[
        bool,
        typer.Option(
            help="Add message content (task text, answers) to spans; also "
            "$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true. Off by default.",
        ),
    ] = False,
    idle_exit: Annotated[
        float | None,
        typer.Option(help="Exit once the stream has been idle this many seconds (a replay)."),
    ] = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Export trace events as OpenTelemetry GenAI spans over OTLP/HTTP.

    The endpoint comes from the standard OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT,
    _HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE) variables; nothing is sent without one.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    from hieramas.otelexport import (
        TraceExporter,
        TraceStreamMissing,
        content_opted_in,
        otlp_configured,
    )

    if not nats:
        err.print("[red]--nats (or $HIERAMAS_NATS_URL) is required[/red]")
        raise typer.Exit(2)
    if not otlp_configured():
        err.print(
            "[red]no OTLP endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. "
            "http://127.0.0.1:4318) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT[/red]"
        )
        raise typer.Exit(2)
    if start not in ("all", "new") and not start.isdigit():
        raise typer.BadParameter("'all', 'new' or a stream sequence number", param_hint="--start")
    stop = stop_on_signals()
    start_metrics(metrics_port, "exporter")
    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES too
    resource = Resource.create({"service.name": "hieramas"})
    exporter = TraceExporter(
        Bus(NatsSettings.from_env(nats, name="hieramas-otel-export")),
        OTLPSpanExporter(),
        durable=durable,
        start=start if start in ("all", "new") else int(start),
        reset=reset,
        content=content or content_opted_in(),
        resource=resource,
    )
    bus = exporter.bus.start()
    try:
        try:
            bus.call(exporter.open(stream_wait_s=300), timeout=330)
        except TraceStreamMissing as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        err.print(f"exporting traces (consumer {durable})", highlight=False)
        bus.call(exporter.run(stop.is_set, idle_exit_s=idle_exit), timeout=None)
    finally:
        bus.call(exporter.close(), timeout=10)
        exporter.exporter.shutdown()
        bus.stop()
        stats = exporter.stats
        err.print(
            f"exported {stats.spans} spans from {stats.events} events "
            f"({stats.failed_exports} failed sends retried)",
            highlight=False,
        )
        if exporter.read.skipped:
            err.print(f"[yellow]{exporter.read.summary()}[/yellow]", highlight=False)
