"""``hieramas learner``, ``hieramas feedback`` and ``hieramas policy list|show|rollback``.

The learner command runs :class:`hieramas.learner.service.LearnerService` until
stopped; the others are one-shot clients of a running system.  torch is imported
only by ``learner`` (the policy commands read JSON records from NATS).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hieramas.bus import Bus, BusError
from hieramas.metricscli import MetricsPortOpt, start_metrics
from hieramas.natsconn import NatsSettings
from hieramas.processes import stop_on_signals
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

__all__ = ["feedback", "learner", "policy_app"]

out = Console()
err = Console(stderr=True)

policy_app = typer.Typer(no_args_is_help=True, help="List, show and roll back policy versions.")

NatsOpt = Annotated[
    str | None,
    typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="NATS URL of a running system."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _connect(nats: str | None, name: str) -> Bus:
    if not nats:
        err.print("[red]--nats URL (or HIERAMAS_NATS_URL) is required for this command[/red]")
        raise typer.Exit(2)
    try:
        return Bus(NatsSettings.from_env(nats, name=name)).start()
    except BusError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


def learner(
    nats: NatsOpt = None,
    run_dir: Annotated[
        Path, typer.Option(help="Where the learner keeps its state, logs and checkpoints.")
    ] = Path("runs/learner"),
    data_dir: Annotated[
        Path | None, typer.Option(envvar="HIERAMAS_DATA_DIR", help="Benchmark data directory.")
    ] = None,
    reward: Annotated[
        str, typer.Option(help="multi (multi-level credit) or final (final-reward-only ablation).")
    ] = "multi",
    batch: Annotated[int, typer.Option(min=1, help="Episodes per REINFORCE update.")] = 16,
    alpha: AlphaOpt = DEFAULT_ALPHA,
    lam: LamOpt = DEFAULT_LAM,
    seed: int = 0,
    embedder: Annotated[
        str,
        typer.Option(help="Query/role/LLM embedder: a sentence-transformers model or hash-<dim>."),
    ] = "all-MiniLM-L6-v2",
    max_lag: Annotated[
        int, typer.Option(min=0, help="Train on episodes sampled at most this many versions ago.")
    ] = 4,
    grace: Annotated[
        float, typer.Option(help="Seconds to wait for a query's missing supernode events.")
    ] = 10.0,
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
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Consume the trace stream, grade, train the policy and publish its versions."""
    from hieramas.learner.service import LearnerOptions, LearnerService
    from hieramas.learner.threads import set_torch_threads

    if reward not in ("multi", "final"):
        err.print(f"[red]--reward must be multi or final, not {reward!r}[/red]")
        raise typer.Exit(2)
    hyper = hyper_or_exit(
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
    )
    stop = stop_on_signals()
    set_torch_threads(1)  # tiny batches: more threads only wait for a busy core
    options = LearnerOptions(
        run_dir=run_dir,
        data_dir=data_dir,
        reward=reward,  # type: ignore[arg-type]  # checked above
        batch=batch,
        alpha=alpha,
        lam=lam,
        seed=seed,
        embedder=embedder,
        max_lag=max_lag,
        grace_s=grace,
        hyper=hyper,
    )
    bus = _connect(nats, "hieramas-learner")
    service = LearnerService(bus, options)
    start_metrics(metrics_port, "learner")
    running = bus.run(service.run())
    out.print(f"learner running (run dir {run_dir})", highlight=False)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            if running.done():
                break
        service.request_stop()
        running.result(timeout=60)
    except Exception as exc:
        err.print(f"[red]learner failed: {type(exc).__name__}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        bus.stop()
    out.print("learner stopped")


def feedback(
    query_id: Annotated[str, typer.Argument(help="The query the score is for.")],
    score: Annotated[float, typer.Option(help="1.0: the answer was right, 0.0: wrong.")],
    source: Annotated[str, typer.Option(help="Who scored it: user, or verifier:<name>.")] = "user",
    comment: Annotated[str | None, typer.Option(help="A note kept with the score.")] = None,
    nats: NatsOpt = None,
) -> None:
    """Score a finished query: a feedback event into the trace stream, for the learner."""
    from hieramas.traces import ensure_trace_stream
    from hieramas.wire import Envelope, Kind, Subjects, new_id
    from hieramas.wire.events import Feedback

    bus = _connect(nats, "hieramas-cli")

    async def send() -> int:
        subjects = Subjects()
        await ensure_trace_stream(bus, subjects)
        event = Feedback(
            query_id=query_id,
            span_id=new_id(),
            score=score,
            source=source,
            comment=comment,
            ts=time.time(),
        )
        envelope = Envelope(kind=Kind.TRACE, payload={"events": [event]}, sender=bus.sender)
        ack = await bus.js.publish(subjects.trace(event.event), bus.encode(envelope))
        return int(ack.seq)

    try:
        seq = bus.call(send(), timeout=30)
    except Exception as exc:
        err.print(f"[red]the feedback was not stored: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        bus.stop()
    out.print(
        f"feedback {score:g} for query {query_id} ({source}), stream seq {seq}", highlight=False
    )


def _records(nats: str | None) -> tuple[list[Any], int]:
    from hieramas.learner.store import PolicyStore

    bus = _connect(nats, "hieramas-cli")

    async def read() -> tuple[list[Any], int]:
        store = await PolicyStore(bus).open()
        return await store.records(), await store.current_version()

    try:
        return bus.call(read(), timeout=60)
    finally:
        bus.stop()


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


@policy_app.command("list")
def policy_list(nats: NatsOpt = None, as_json: JsonOpt = False) -> None:
    """Every published policy version, oldest first."""
    from hieramas.learner.store import PolicyRecord

    records, current = _records(nats)
    if as_json:
        rows = [
            {**r.to_json(), "current": r.version == current}
            if isinstance(r, PolicyRecord)
            else {"error": str(r), "code": r.code}
            for r in records
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(
        "version",
        "parent",
        "lineage",
        "config",
        "step",
        "accuracy",
        "reward",
        "published",
        "current",
    )
    for r in records:
        if not isinstance(r, PolicyRecord):
            table.add_row("?", "", "", f"[red]{r}[/red]", "", "", "", "", "")
            continue
        m, meta = r.metrics, r.meta
        table.add_row(
            str(r.version),
            "" if r.parent is None else str(r.parent),
            r.lineage,
            f"{meta.get('config_name', '')} v{meta.get('config_version', '')}",
            str(meta.get("step", "")),
            f"{m['accuracy']:.3f}" if "accuracy" in m else "",
            f"{m['mean_reward']:.3f}" if "mean_reward" in m else "",
            _when(r.published_unix),
            "*" if r.version == current else "",
        )
    out.print(table)


@policy_app.command("show")
def policy_show(
    version: Annotated[int | None, typer.Argument(help="Default: the current version.")] = None,
    nats: NatsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One version's record: lineage, parent, config, seed, metrics, hyper-parameters."""
    from hieramas.learner.store import PolicyStore, PolicyStoreError

    bus = _connect(nats, "hieramas-cli")

    async def read() -> tuple[Any, int]:
        store = await PolicyStore(bus).open()
        current = await store.current_version()
        return await store.record(version or current), current

    try:
        record, current = bus.call(read(), timeout=30)
    except PolicyStoreError as exc:
        err.print(f"[red]{exc.code}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        bus.stop()
    data = {**record.to_json(), "current": record.version == current}
    if as_json:
        out.print_json(json.dumps(data))
        return
    meta = dict(record.meta)
    table = Table("field", "value", show_header=False)
    table.add_row("version", f"{record.version}{' (current)' if data['current'] else ''}")
    table.add_row("parent", str(record.parent))
    table.add_row("lineage", record.lineage)
    table.add_row("config", f"{meta.get('config_name')} v{meta.get('config_version')}")
    for key in ("step", "seed", "embedder", "temperature", "slots"):
        table.add_row(key, str(meta.get(key)))
    for key, value in sorted((meta.get("hyper") or {}).items()):
        if not isinstance(value, dict):  # the reward settings are a map of their own
            table.add_row(f"hyper.{key}", str(value))
    for key, value in sorted(((meta.get("hyper") or {}).get("reward") or {}).items()):
        table.add_row(f"hyper.reward.{key}", str(value))
    table.add_row("size", f"{record.size} bytes")
    table.add_row("published", _when(record.published_unix))
    for key, value in sorted(record.metrics.items()):
        table.add_row(f"metrics.{key}", f"{value:.6g}")
    out.print(table)


@policy_app.command("rollback")
def policy_rollback(
    version: Annotated[int, typer.Argument(help="The version to make current again.")],
    nats: NatsOpt = None,
) -> None:
    """Make an older version current: the controller plans with it within a second, and the
    learner continues training from it."""
    from hieramas.learner.store import PolicyStore, PolicyStoreError

    bus = _connect(nats, "hieramas-cli")

    async def roll() -> None:
        store = await PolicyStore(bus).open()
        await store.rollback(version)

    try:
        bus.call(roll(), timeout=30)
    except PolicyStoreError as exc:
        err.print(f"[red]{exc.code}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        bus.stop()
    out.print(f"policy version {version} is current")
