"""The ``hieramas`` command: ``up``, ``worker``, ``controller``, ``learner``, ``ask``, ``config``, ``traces``.

Every command that talks to NATS takes ``--nats URL`` (or ``$HIERAMAS_NATS_URL``);
without it, ``up`` and ``ask`` start an embedded stack, and ``demo`` always
does.  NATS credentials come from ``HIERAMAS_NATS_*`` environment variables or
the URL, and a URL is only ever printed or logged with its password masked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from hieramas.benchcli import bench
from hieramas.bus import Bus, BusError, RemoteError
from hieramas.controller.client import HieraClient
from hieramas.controller.config import ConfigError, PlannerConfig, parse_config
from hieramas.democli import demo
from hieramas.emulator.cli import app as emulator_app
from hieramas.explain import explain
from hieramas.learnercli import feedback, learner, policy_app
from hieramas.llm.local.cli import app as local_app
from hieramas.logs import configure_logging
from hieramas.metricscli import MetricsPortOpt, start_metrics
from hieramas.natsconn import NatsSettings, redact_url
from hieramas.otelcli import traces_export
from hieramas.processes import spawn, stop_on_signals, terminate, unwind_on_signals
from hieramas.reportcli import report
from hieramas.tasks.download import app as data_app
from hieramas.traincli import compare, train, trap
from hieramas.wire import WireError

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n")[0])
config_app = typer.Typer(no_args_is_help=True, help="Apply and inspect versioned configs.")
traces_app = typer.Typer(no_args_is_help=True, help="Read the trace stream.")
app.add_typer(config_app, name="config")
app.add_typer(traces_app, name="traces")
traces_app.command("export")(traces_export)
app.add_typer(local_app, name="local")
app.add_typer(emulator_app, name="emulator")
app.add_typer(data_app, name="data")
app.add_typer(policy_app, name="policy")
app.command("bench")(bench)
app.command("learner")(learner)
app.command("feedback")(feedback)
app.command("train")(train)
app.command("compare")(compare)
app.command("trap")(trap)
app.command("explain")(explain)
app.command("demo")(demo)
app.command("report")(report)
out = Console()
err = Console(stderr=True)

NatsOpt = Annotated[
    str | None,
    typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="NATS URL (default: embedded server)."),
]
NatsRequiredOpt = Annotated[
    str | None,
    typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="NATS URL of a running system."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config YAML (default: the built-in demo).")
]
PlannerOpt = Annotated[
    str | None,
    typer.Option(
        "--planner",
        help="The planner of configs that name none: a kind (static, learned) or a YAML map "
        "with its options, e.g. '{kind: learned, provider: \"module:factory\"}'. "
        "Default: static.",
    ),
]


def default_config_text() -> str:
    """The packaged default config (general questions, served by the embedded emulator)."""
    return resources.files("hieramas").joinpath("configs/default.yaml").read_text()


def _read_config(path: Path | None) -> str:
    text = path.read_text() if path else default_config_text()
    try:
        parse_config(text)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return text


@app.callback()
def _setup(
    log_level: Annotated[str, typer.Option(envvar="HIERAMAS_LOG_LEVEL")] = "warning",
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--log-console",
            help="Log JSON lines or text (default: JSON unless stderr is a terminal, "
            "or $HIERAMAS_LOG_FORMAT=json|console).",
            show_default=False,
        ),
    ] = None,
) -> None:
    configure_logging(log_level, json=log_json)


@app.command()
def up(
    nats: NatsOpt = None,
    config: ConfigOpt = None,
    state_dir: Annotated[Path | None, typer.Option(help="JetStream store (default: temp).")] = None,
    workers: Annotated[int, typer.Option(min=0, help="In-process workers.")] = 1,
    emulator: Annotated[bool, typer.Option(help="Start the emulated LLM pool.")] = True,
    emulator_seed: int = 0,
    latency_scale: Annotated[float, typer.Option(help="Emulated latency factor.")] = 0.0,
    planner: PlannerOpt = None,
    learner: Annotated[
        bool, typer.Option(help="Start a learner process (its state: <state-dir>/learner).")
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65534,
            help="Serve /metrics: this process (controller and workers) on PORT, the emulator "
            "on PORT+1, the learner on PORT+2, the trace exporter on PORT+3 (0: free ports, "
            "printed); off unless given.",
        ),
    ] = None,
    otel_export: Annotated[
        bool,
        typer.Option(
            help="Also run `hieramas traces export` (needs OTEL_EXPORTER_OTLP_ENDPOINT).",
        ),
    ] = False,
) -> None:
    """Start NATS (embedded unless --nats), the emulator, the controller, workers and a learner; run until Ctrl-C."""
    from hieramas.natsserver import free_port
    from hieramas.stack import Stack

    if otel_export:
        from hieramas.otelexport import otlp_configured

        if not otlp_configured():
            err.print("[red]--otel-export: set OTEL_EXPORTER_OTLP_ENDPOINT first[/red]")
            raise typer.Exit(2)
    stop = stop_on_signals()
    text = _read_config(config)
    child_ports: dict[str, int] = {}
    if metrics_port is not None:
        own = start_metrics(metrics_port, "controller and workers")
        assert own is not None
        for offset, part in ((1, "emulator"), (2, "learner"), (3, "exporter")):
            child_ports[part] = own + offset if metrics_port else free_port()
    stack = Stack(
        nats_url=nats,
        state_dir=state_dir,
        workers=workers,
        emulator=emulator,
        emulator_seed=emulator_seed,
        emulator_latency_scale=latency_scale,
        planner=_planner_spec(planner),
        learner=learner,
        learner_options=["--metrics-port", str(child_ports["learner"])] if child_ports else (),
        emulator_metrics_port=child_ports.get("emulator"),
    )
    with _planner_errors(), stack:
        assert stack.bus is not None
        version = stack.bus.call(HieraClient(stack.bus).apply_config(text, source="up"), 30)
        out.print(f"NATS {redact_url(stack.url)}", highlight=False)  # a password stays private
        if stack.emulator_url:
            out.print(f"emulator {stack.emulator_url} (emulated LLMs)")
        out.print(f"config version {version}; Ctrl-C to stop", highlight=False)
        if stack.learner is not None:
            out.print(f"learner run dir {stack.learner.run_dir.path}", highlight=False)
        running = {
            "emulator": stack.emulator is not None,
            "learner": stack.learner is not None,
            "exporter": otel_export,
        }
        where = ", ".join(f"{part} {port}" for part, port in child_ports.items() if running[part])
        if where:
            out.print(f"metrics also on: {where}", highlight=False)
        exporter = (
            _start_otel_export(stack.url, child_ports.get("exporter")) if otel_export else None
        )
        try:
            sys.stdout.flush()
            stop.wait()
        finally:
            terminate(exporter, timeout=15)  # before NATS stops: it acknowledges what it sent
    out.print("stopped")


def _start_otel_export(nats_url: str, metrics_port: int | None) -> subprocess.Popen[bytes]:
    """``hieramas traces export`` beside the stack, a child process of its own."""
    args = [sys.executable, "-m", "hieramas", "traces", "export", "--nats", nats_url]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    process = spawn(args)
    out.print(f"exporting traces over OTLP (pid {process.pid})", highlight=False)
    return process


@app.command()
def worker(
    nats: NatsRequiredOpt = None,
    nodes: Annotated[
        str | None, typer.Option(help="Comma-separated node ids (default: all).")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Serve the nodes a config's placement puts in this group.")
    ] = None,
    key_env: Annotated[
        list[str] | None,
        typer.Option(
            "--key-env",
            help="An environment variable this worker may read API keys from, besides "
            "HIERAMAS_KEY_* (repeatable; or $HIERAMAS_KEY_ENV, comma-separated).",
        ),
    ] = None,
    emulator_url: Annotated[
        str | None,
        typer.Option(help="Base URL for 'kind: emulator' (default: the controller's)."),
    ] = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Host supernode/proposer/synthesizer/decision actors against an existing NATS."""
    from hieramas.stack import Stack

    stop = stop_on_signals()
    start_metrics(metrics_port, "worker")
    wanted = {n.strip() for n in nodes.split(",") if n.strip()} if nodes else None
    with Stack(
        nats_url=_require(nats),
        controller=False,
        nodes=wanted,
        group=group,
        key_env=key_env or (),
        emulator_url=emulator_url,
    ) as stack:
        where = f" in group {group}" if group else ""
        out.print(f"worker {stack.workers[0].worker_id} serving {sorted(wanted or {'*'})}{where}")
        sys.stdout.flush()
        stop.wait()


@app.command()
def controller(
    nats: NatsRequiredOpt = None,
    emulator_url: Annotated[str | None, typer.Option(help="Base URL for 'kind: emulator'.")] = None,
    planner: PlannerOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run the controller (config store + gateway) against an existing NATS."""
    from hieramas.stack import Stack

    stop = stop_on_signals()
    start_metrics(metrics_port, "controller")
    spec = _planner_spec(planner)
    with (
        _planner_errors(),
        Stack(nats_url=_require(nats), workers=0, emulator_url=emulator_url, planner=spec),
    ):
        out.print("controller running")
        sys.stdout.flush()
        stop.wait()


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="The question or task.")],
    nats: NatsOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    domain: Annotated[str | None, typer.Option(help="Override the config's domain.")] = None,
    timeout: Annotated[float, typer.Option(help="Query deadline in seconds.")] = 120.0,
    traceparent: Annotated[
        str | None,
        typer.Option(
            envvar="TRACEPARENT",
            help="W3C traceparent of the caller's span: the query's spans join that trace.",
        ),
    ] = None,
) -> None:
    """Answer one query (a one-shot embedded stack unless --nats)."""
    if traceparent:
        from hieramas.wire.traceparent import parse_traceparent

        try:
            parse_traceparent(traceparent)
        except WireError as exc:
            raise typer.BadParameter(str(exc), param_hint="--traceparent / TRACEPARENT") from None
    if nats:
        if config is not None:
            err.print(
                "[yellow]--config is ignored with --nats; use 'hieramas config apply'[/yellow]"
            )
        result = _with_bus(
            nats,
            lambda c: c.ask(text, domain=domain, timeout_s=timeout, traceparent=traceparent),
        )
    else:
        from hieramas.stack import Stack

        unwind_on_signals()
        config_text = _read_config(config)
        with Stack(emulator=parse_config(config_text).uses_emulator()) as stack:
            assert stack.bus is not None
            client = HieraClient(stack.bus)
            with _clear_errors():
                stack.bus.call(client.apply_config(config_text, source="ask"), 30)
                result = stack.bus.call(
                    client.ask(text, domain=domain, timeout_s=timeout, traceparent=traceparent),
                    timeout + 10,
                )
    _print_result(result, as_json)
    if nats and not as_json and result.get("query_id"):  # the stream outlives this command
        err.print(f"explain it: hieramas explain {result['query_id']} --nats URL", highlight=False)
    if result.get("status") != "ok":
        raise typer.Exit(1)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result, default=str))
        return
    if result.get("status") != "ok":
        err.print(f"[red]{result.get('status')}: {result.get('error')}[/red]")
    for failure in result.get("failures") or []:  # the answer stands, but say what failed
        err.print(f"[yellow]failed: {failure}[/yellow]", highlight=False)
    if result.get("text"):
        out.print(result["text"], highlight=False)
    label = " (emulated LLMs)" if result.get("emulated") else ""
    err.print(
        f"answer={result.get('answer')!r} config v{result.get('config_version')} "
        f"cost=${float(result.get('cost_usd') or 0):.6f} latency={float(result.get('latency_s') or 0):.2f}s"
        f" query={result.get('query_id')} trace={result.get('trace_id')}{label}",
        highlight=False,
    )


@config_app.command("apply")
def config_apply(file: Path, nats: NatsRequiredOpt = None) -> None:
    """Validate FILE and make it the current config version."""
    text = _read_config(file)
    version = _with_bus(_require(nats), lambda c: c.apply_config(text))
    out.print(f"applied config version {version}")


@config_app.command("show")
def config_show(
    nats: NatsRequiredOpt = None,
    version: Annotated[int | None, typer.Option(help="A past version.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the current (or a given) config version."""
    shown = _with_bus(_require(nats), lambda c: c.get_config(version))
    if as_json:
        out.print_json(
            json.dumps(
                {k: shown[k] for k in ("version", "config", "applied_at", "source", "workers")}
            )
        )
    else:
        out.print(f"# version {shown['version']} (source: {shown['source']})", highlight=False)
        out.print(shown["yaml"], highlight=False)


@config_app.command("history")
def config_history(
    nats: NatsRequiredOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List every applied config version."""
    rows = _with_bus(_require(nats), lambda c: c.history())
    if as_json:
        out.print_json(json.dumps(rows))
        return
    from datetime import UTC, datetime

    table = Table("version", "name", "source", "applied", "current")
    for row in rows:
        if row.get("error"):  # a corrupt record: say so rather than show a 1970 date
            name, applied = f"[red]unreadable: {row['error']}[/red]", ""
        else:
            name = str(row["name"])
            applied = datetime.fromtimestamp(float(row["applied_at"]), UTC).isoformat(
                timespec="seconds"
            )
        table.add_row(
            str(row["version"]), name, str(row["source"]), applied, "*" if row["current"] else ""
        )
    out.print(table)


@traces_app.command("tail")
def traces_tail(
    nats: NatsRequiredOpt = None,
    last: Annotated[int, typer.Option(min=0, help="Replay the last N events first.")] = 20,
    follow: Annotated[bool, typer.Option(help="Keep printing new events.")] = False,
) -> None:
    """Print trace events from the JetStream stream as JSON lines.

    Unreadable messages and bad event records are skipped; stderr says how many and why.
    """
    from nats.js.api import ConsumerConfig, DeliverPolicy

    from hieramas.traces import TRACE_STREAM, ReadStats, read_events, replay
    from hieramas.wire import Subjects
    from hieramas.wire.events import event_json

    stats = ReadStats()

    async def tail(bus: Bus) -> None:
        try:
            info = await bus.js.stream_info(TRACE_STREAM)
        except Exception as exc:
            err.print(f"[red]no trace stream {TRACE_STREAM} on this NATS: {exc}[/red]")
            raise typer.Exit(1) from None
        first, newest = int(info.state.first_seq), int(info.state.last_seq)
        back = last  # a message holds one or more events: read back further until N are found
        while last and newest:
            start = max(newest - back + 1, first, 1)
            read = ReadStats()
            events = await replay(bus, Subjects(), start_seq=start, idle_s=0.5, stats=read)
            if len(events) >= last or start <= first:
                break
            back *= 4
        else:
            events, read = [], ReadStats()
        for event in events[-last:] if last else []:
            print(event_json(event), flush=True)
        stats.add(read)
        if stats.skipped:
            err.print(f"[yellow]{stats.summary()}[/yellow]", highlight=False)
        if not follow:
            return
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        sub = await bus.js.subscribe(
            Subjects().trace_wildcard, ordered_consumer=True, config=config
        )
        async for msg in sub.messages:
            skipped = stats.skipped
            for event in read_events(msg.data, stats, seq=msg.metadata.sequence.stream):
                print(event_json(event), flush=True)
            if stats.skipped > skipped:
                err.print(f"[yellow]{stats.last_error}[/yellow]", highlight=False)

    bus = Bus(NatsSettings.from_env(_require(nats), name="hieramas-cli")).start()
    try:
        bus.call(tail(bus))
    finally:
        bus.stop()


def _planner_spec(option: str | None) -> PlannerConfig | None:
    """``--planner``: a kind, or a YAML map of a planner config; exit 2 if it is invalid."""
    from hieramas.controller.planners import planner_kinds

    if option is None:
        return None
    try:
        raw = yaml.safe_load(option)
        spec = PlannerConfig.model_validate(raw if isinstance(raw, dict) else {"kind": option})
    except (yaml.YAMLError, ValidationError) as exc:
        err.print(f"[red]--planner: {exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if spec.kind not in planner_kinds():
        known = ", ".join(planner_kinds())
        err.print(f"[red]--planner: unknown planner {spec.kind!r} (known: {known})[/red]")
        raise typer.Exit(2)
    return spec


@contextmanager
def _planner_errors() -> Iterator[None]:
    """A planner that cannot be built stops the start-up with one red line, exit status 2."""
    from hieramas.controller.planners import PlannerError

    try:
        yield
    except PlannerError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _require(nats: str | None) -> str:
    if not nats:
        err.print("[red]--nats URL (or HIERAMAS_NATS_URL) is required for this command[/red]")
        raise typer.Exit(2)
    return nats


def _with_bus(nats: str, action: Any) -> Any:
    bus = Bus(NatsSettings.from_env(nats, name="hieramas-cli"))
    try:
        bus.start()
    except Exception as exc:
        err.print(
            f"[red]cannot connect to NATS at {NatsSettings(url=nats).redacted_url()}: {exc}[/red]"
        )
        raise typer.Exit(2) from None
    try:
        with _clear_errors():
            return bus.call(action(HieraClient(bus)), timeout=None)
    finally:
        bus.stop()


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the errors a request can end with into one red line and exit status 1."""
    try:
        yield
    except RemoteError as exc:  # the other side answered with an error
        err.print(f"[red]{exc.code}: {exc.detail}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except (BusError, WireError) as exc:  # undeliverable, unanswered, or over the size limit
        err.print(f"[red]{exc.code}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
