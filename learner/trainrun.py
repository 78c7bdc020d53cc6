"""Running one training run: its directory, its embedded stack, resuming, the driver.

Without ``--nats``, :func:`run_training` starts everything the run needs, as
``hieramas bench`` does: a nats-server whose JetStream store is ``<run-dir>/nats``,
the emulator (``--profiles``), the controller and a worker in this process, and a
learner *process* (``<run-dir>/learner``) given the run's reward mode, batch,
seed and embedder.  With ``--nats`` it starts nothing: a controller, workers and a
learner must already serve that NATS.

Resuming: a run directory holds ``driver.json``; started again with the same
options, the run continues from it (the options that define the run must match;
``--queries`` may grow).  Children a killed run left behind are stopped first
(:mod:`.children`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from hieramas.benchcli import load_items
from hieramas.learner.children import lock_run, reap_children, record_children
from hieramas.learner.driver import (
    DRIVER_STATE,
    DriverError,
    DriverState,
    Progress,
    TrainingDriver,
    TrainOptions,
    load_config_doc,
)
from hieramas.learner.hyper import LEGACY
from hieramas.learner.localtrain import (
    LOCAL_CHILD,
    eval_config,
    local_server,
    training_items,
    with_base_url,
)
from hieramas.learner.trainconfig import to_yaml
from hieramas.tasks import datasets
from hieramas.tasks.datasets import Item

__all__ = ["learner_options", "run_training"]

log = structlog.get_logger(__name__)


def learner_options(options: TrainOptions) -> list[str]:
    """The ``hieramas learner`` options of an embedded run's learner."""
    return [
        "--reward", options.reward, "--batch", str(options.batch), "--seed", str(options.seed),
        "--embedder", options.embedder, "--alpha", str(options.alpha), "--lam", str(options.lam),
        "--data-dir", str(datasets.data_dir(options.data_dir)), *options.hyper.args(),
    ]  # fmt: skip


def _state(options: TrainOptions, config_text: str) -> DriverState:
    path = options.run_dir / DRIVER_STATE
    identity = json.loads(json.dumps(options.identity(config_text)))
    state = DriverState.load(path)
    if state is None:
        return DriverState(identity=identity)
    # a run made before the trainer's settings were options used the settings of then
    state.identity = {**LEGACY.to_json(), **state.identity}
    differ = sorted(
        k for k in set(identity) | set(state.identity) if identity.get(k) != state.identity.get(k)
    )
    if differ:
        raise DriverError(
            f"{options.run_dir} holds a run with other {', '.join(differ)}: use another "
            "--run-dir, or the options it was started with"
        )
    if state.finished and state.counted < options.queries:
        state.finished = False  # a larger budget: train on
    return state


def _run_json(options: TrainOptions) -> dict[str, Any]:
    """The run's options as given (paths absolute), for people and ``hieramas compare``."""
    data: dict[str, Any] = {}
    for name in TrainOptions.__dataclass_fields__:
        value = getattr(options, name)
        data[name] = str(Path(value).resolve()) if isinstance(value, Path) else value
    if options.profiles:
        data["profiles"] = str(Path(options.profiles).resolve())
    if options.models:
        data["models"] = list(options.models)
    data["hyper"] = options.hyper.to_json()
    return data


def run_training(options: TrainOptions, on_progress: Progress | None = None) -> dict[str, Any]:
    """Train (or continue training) one run; the run's summary (see the module docstring)."""
    from hieramas.stack import EmulatorProcess, Stack

    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run(run_dir)
    try:
        stale = reap_children(run_dir)
        if stale:
            log.warning("train.stopped_stale_children", children=stale)
        doc = load_config_doc(options)
        config_text = to_yaml(doc)
        state = _state(options, config_text)
        (run_dir / "config.yaml").write_text(config_text)
        (run_dir / "run.json").write_text(json.dumps(_run_json(options), indent=1))
        train_items, val_items = _items(options)
        emulator: EmulatorProcess | None = None
        llms = contextlib.ExitStack()  # the local llama.cpp server of a --local run
        local_url, local_pid = (
            llms.enter_context(local_server(run_dir, options.models))
            if options.local
            else (None, None)
        )
        try:
            if local_url is not None:
                doc = with_base_url(doc, local_url)
            elif options.nats is None:
                emulator = EmulatorProcess(
                    seed=options.seed, latency_scale=0.0, profiles=options.profiles
                ).start()
                record_children(
                    run_dir, {"emulator": emulator.process.pid if emulator.process else None}
                )
            stack = Stack(
                nats_url=options.nats,
                state_dir=run_dir / "nats" if options.nats is None else None,
                emulator_url=emulator.url if emulator is not None else None,
                learner=options.nats is None,
                learner_run_dir=run_dir / "learner",
                learner_options=learner_options(options),
            )
            with stack:
                record_children(
                    run_dir,
                    {
                        "emulator": emulator.process.pid if emulator and emulator.process else None,
                        "nats": stack.nats.process.pid
                        if stack.nats and stack.nats.process
                        else None,
                        "learner": stack.learner.pid if stack.learner else None,
                        LOCAL_CHILD: local_pid,
                    },
                )
                assert stack.bus is not None
                driver = TrainingDriver(
                    stack.bus,
                    options,
                    train_items=train_items,
                    val_items=val_items,
                    config_doc=doc,
                    state=state,
                    on_progress=on_progress,
                )
                summary: dict[str, Any] = stack.bus.call(driver.run(), timeout=None)
            if options.local and (run_dir / "best.ckpt").exists():
                (run_dir / "eval.yaml").write_text(eval_config(config_text, run_dir / "best.ckpt"))
            return summary
        finally:
            if emulator is not None:
                emulator.stop()
            llms.close()
            (run_dir / "children.json").unlink(missing_ok=True)
    finally:
        lock.release()


def _items(options: TrainOptions) -> tuple[list[Item], list[Item]]:
    """The run's training and validation items (``--holdout``: without the held-out ones)."""
    if options.holdout:
        return training_items(
            options.dataset, holdout=options.holdout, seed=options.seed,
            eval_items=options.eval_items, data_dir=options.data_dir,
        )  # fmt: skip
    train_items, _ = load_items(options.dataset, "train", None, options.seed, options.data_dir)
    if options.eval_spread:
        every, _ = load_items(options.dataset, "validation", None, options.seed, options.data_dir)
        return train_items, spread(every, options.eval_items)
    val_items, _ = load_items(
        options.dataset, "validation", options.eval_items, options.seed, options.data_dir
    )
    return train_items, val_items


def spread(items: Sequence[Item], n: int) -> list[Item]:
    """``n`` items evenly spaced over ``items`` (all of them if there are fewer).

    A split keeps the dataset's order, which groups items by subject, so its first
    ``n`` items cover a few subjects only; evenly spaced ones cover them all.
    """
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``summary.json`` (or, before it ends, what ``driver.json`` says)."""
    summary = run_dir / "summary.json"
    if summary.exists():
        return dict(json.loads(summary.read_text()))
    state = DriverState.load(run_dir / DRIVER_STATE)
    if state is None:
        raise DriverError(f"{run_dir} holds no training run")
    return {"evals": state.evals, "best": state.best, "queries": state.counted}
