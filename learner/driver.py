"""The Stage-1 training driver: training queries through the live runtime, evaluations, the best version.

``hieramas train --stage 1`` runs :func:`run_training`.  The driver is a client of
the runtime like any other: it sends training queries (train-split items, named
by ``item_id``, with ``explore`` set so the learned planner samples their plans
from the current policy version) through the gateway, and reads policy versions
from the policy store.  The learner is another process: it reads the same
queries' traces from JetStream, grades them, trains and publishes versions.  The
two meet only on NATS.

One **iteration** sends ``batch`` training queries (``concurrency`` at a time),
grades the answers itself (for the progress display and the metrics log; the
learner grades them again for its rewards), then waits until the learner has
trained on every query counted so far (its published step reaches a bound
calibrated while it was quiet; ``learner_wait_s`` at most, then it is calibrated
anew), so the next iteration samples from the version trained on this one.  A query counts against the budget only when a policy sampled its
plan and it did not fail for an unreachable LLM endpoint (no episode for the learner);
others are asked again later.

Every ``eval_every`` iterations, and at the end, the current version is
**evaluated greedily**, once the learner is quiet, on the first ``eval_items``
validation items, with the training config (greedy queries are never trained on,
so the learner publishes nothing meanwhile; each result names the version that
planned it, and a row counts any that another version planned).  The training
config stays the current one throughout: a learner follows the current config, and
must not be made to switch.  The version the ``select`` rule picks is kept
(:mod:`.versionselect`: the most accurate, then the cheapest; or the cheapest not
significantly below the most accurate, paired on the validation items); at
the end the policy store is rolled back to it, so it is what the controller plans
with and what the learner continues from.

**Run directory** (``--run-dir``): ``driver.json`` (the driver's state: items done,
the config version, evaluations, the best version), ``metrics.jsonl`` (one line
per iteration and per evaluation), ``checkpoints/v<N>.ckpt`` (each evaluated
version, as published) and ``best.ckpt``; with the embedded stack also ``nats/``
(the JetStream store: traces, configs, policy versions) and ``learner/`` (the
learner's own run directory).  Everything is written so that a run killed at any
point (SIGKILL included) continues where it stopped when started again with the
same options: the items already counted are not asked again, the learner resumes
from its own state and the stream, and the policy versions are still in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.controller.config import parse_config
from hieramas.evaluation import EvalReport
from hieramas.learner.embeddings import DEFAULT_MODEL
from hieramas.learner.hyper import Hyper
from hieramas.learner.querying import Asked, Selection, ask_graded
from hieramas.learner.store import PolicyStore, PolicyStoreError
from hieramas.learner.trainconfig import DOMAIN_OF, to_yaml, training_config, with_planner
from hieramas.learner.versionselect import SelectRule, choose, outcome_string
from hieramas.tasks.datasets import Item
from hieramas.tasks.sandbox import Sandbox

__all__ = [
    "DRIVER_STATE",
    "METRICS",
    "DriverError",
    "DriverState",
    "TrainOptions",
    "TrainingDriver",
    "item_order",
    "load_config_doc",
    "trim_metrics",
]

log = structlog.get_logger(__name__)

DRIVER_STATE = "driver.json"
METRICS = "metrics.jsonl"
STATE_FORMAT = 1
LEARNER_METRICS = (
    "mean_reward", "accuracy", "mean_cost_usd", "entropy", "temperature", "used", "loss",
    "mean_ratio",
)  # fmt: skip
"""The learner's update metrics (from the version's record) copied into each iteration row."""


class DriverError(RuntimeError):
    """The run cannot go on (e.g. resumed with other options, no learner publishing)."""


@dataclass(frozen=True)
class TrainOptions:
    """``hieramas train --stage 1`` options."""

    dataset: str
    run_dir: Path
    queries: int = 2000
    batch: int = 16
    concurrency: int = 8
    seed: int = 0
    reward: str = "multi"
    eval_every: int = 5
    """Evaluate every this many iterations (0: only at the end)."""
    eval_items: int = 100
    eval_spread: bool = False
    """Validate on ``eval_items`` evenly spaced over the validation split, not its first ones."""
    config: Path | None = None
    nats: str | None = None
    embedder: str = DEFAULT_MODEL
    profiles: str | None = None
    """Emulator profile file (embedded stack only; default: the packaged pool)."""
    models: tuple[str, ...] | None = None
    roles: int | None = None
    edges: str = "full"
    proposers: int = 2
    """Proposer slots per supernode of the default config."""
    llm_temperature: float = 0.0
    """The LLMs' sampling temperature in the default config (see :func:`~.trainconfig.training_config`)."""
    alpha: float = 0.5
    lam: float = 300.0
    hyper: Hyper = field(default_factory=Hyper)
    """The learner's entropy coefficient, learning rate and temperature schedule."""
    decode: str = "greedy"
    """How evaluations (and the kept version) decode: ``greedy`` or ``rotation``."""
    select: SelectRule = "best"
    """Which evaluated version is kept (:mod:`.versionselect`): ``best`` or ``paired``."""
    data_dir: Path | None = None
    timeout_s: float = 120.0
    learner_wait_s: float = 60.0
    local: bool = False
    """REAL local llama.cpp models instead of the emulator (:mod:`.localtrain`)."""
    holdout: int = 0
    """The dataset's first N items are neither trained nor validated on (:mod:`.localtrain`)."""

    def identity(self, config_text: str) -> dict[str, Any]:
        """What a resumed run must share with the run it continues."""
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "reward": self.reward,
            "batch": self.batch,
            "embedder": self.embedder,
            "alpha": self.alpha,
            "lam": self.lam,
            **self.hyper.to_json(),
            "eval_items": self.eval_items,
            "profiles": _digest_file(self.profiles),
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            # only when set, so runs from before these options still resume
            **({"local": True} if self.local else {}),
            **({"holdout": self.holdout} if self.holdout else {}),
            **({"eval_spread": True} if self.eval_spread else {}),
        }


def _digest_file(path: str | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


@dataclass
class DriverState:
    """The driver's durable record (``driver.json``)."""

    identity: dict[str, Any]
    config_version: int = 0
    done: set[int] = field(default_factory=set)
    """Positions in :func:`item_order` whose training query a policy sampled and answered."""
    iteration: int = 0
    unplanned: int = 0
    evals: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    finished: bool = False
    final_version: int | None = None
    wall_s: float = 0.0

    @property
    def counted(self) -> int:
        return len(self.done)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["done"] = sorted(self.done)
        data["format"] = STATE_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriverState:
        if data.get("format") != STATE_FORMAT:
            raise DriverError(f"unknown driver state format {data.get('format')!r}")
        data = {k: v for k, v in data.items() if k != "format"}
        data["done"] = set(int(i) for i in data.get("done") or ())
        known = set(cls.__dataclass_fields__)
        data = {k: v for k, v in data.items() if k in known}  # e.g. a dropped field
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> DriverState | None:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise DriverError(f"{path}: unreadable driver state: {exc}") from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w") as fh:
            json.dump(self.to_json(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def item_order(n_items: int, seed: int, position: int, group: int = 1) -> int:
    """The train item asked at ``position``: a fresh seeded shuffle of the items per epoch,
    each item asked ``group`` times in a row."""
    epoch, offset = divmod(position // group, n_items)
    order = list(range(n_items))
    random.Random(f"hieramas-train-order:{seed}:{epoch}").shuffle(order)
    return order[offset]


def load_config_doc(options: TrainOptions) -> dict[str, Any]:
    """The training config document: ``--config FILE`` (a learned planner added if it names
    none) or the dataset's default (:func:`~.trainconfig.training_config`)."""
    if options.config is not None:
        doc = yaml.safe_load(options.config.read_text())
        if not isinstance(doc, dict):
            raise DriverError(f"{options.config}: not a config document")
        if doc.get("domain") != DOMAIN_OF[options.dataset]:
            raise DriverError(
                f"{options.config}: domain {doc.get('domain')!r} is not the dataset's "
                f"({DOMAIN_OF[options.dataset]!r})"
            )
        if not doc.get("planner") or doc["planner"].get("kind") != "learned":
            doc = with_planner(doc, {"kind": "learned"})
        return dict(doc)
    if options.local:
        from hieramas.learner.localtrain import local_training_config

        return local_training_config(
            options.dataset, models=options.models, embedder=options.embedder
        )
    return training_config(
        options.dataset,
        seed=options.seed,
        profiles_path=options.profiles,
        models=options.models,
        roles=options.roles,
        edges=options.edges,
        proposers_per_node=options.proposers,
        llm_temperature=options.llm_temperature,
        embedder=options.embedder,
        decode=options.decode,
    )


Progress = Callable[[dict[str, Any]], None]


def trim_metrics(path: Path, state: DriverState) -> int:
    """Drop the rows of ``path`` that ``state`` does not cover; the number dropped.

    A run killed between logging an iteration (or an evaluation) and saving its state
    repeats it when resumed, so its row must go; a torn last line goes too."""
    if not path.exists():
        return 0
    evals = {(e.get("iteration"), e.get("version")) for e in state.evals}
    lines = path.read_text().splitlines()
    kept: list[str] = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        kind = row.get("kind") if isinstance(row, dict) else None
        if kind == "train" and int(row.get("iteration", 0)) > state.iteration:
            continue
        if kind == "eval" and (row.get("iteration"), row.get("version")) not in evals:
            continue
        kept.append(line)
    if len(kept) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, path)
    return len(lines) - len(kept)


class TrainingDriver:
    """Runs the iterations and evaluations of one run on a started bus (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        options: TrainOptions,
        *,
        train_items: Sequence[Item],
        val_items: Sequence[Item],
        config_doc: dict[str, Any],
        state: DriverState,
        on_progress: Progress | None = None,
    ) -> None:
        if not train_items:
            raise DriverError("no training items")
        self.bus = bus
        self.options = options
        self.train_items = list(train_items)
        self.val_items = list(val_items[: options.eval_items])
        self.doc = config_doc
        self.config_text = to_yaml(config_doc)
        config = parse_config(self.config_text)
        self.proposers = {n: len(s.proposers) for n, s in config.supernodes.items()}
        self.state = state
        self.on_progress = on_progress
        self.client = HieraClient(bus, sender="train-driver")
        self.run_dir = options.run_dir
        trim_metrics(self.run_dir / METRICS, self.state)
        self.store: PolicyStore | None = None
        self.sandbox = Sandbox() if config.domain == "humaneval" else None
        self.counters: Counter[str] = Counter()
        self._started = time.monotonic()
        self._wall_before = state.wall_s
        self._idle = 0
        self._calib: tuple[int, int] | None = None

    # -- files ---------------------------------------------------------------------------

    def _save(self) -> None:
        self.state.wall_s = self._wall_before + time.monotonic() - self._started
        self.state.save(self.run_dir / DRIVER_STATE)

    def _log(self, row: dict[str, Any]) -> None:
        with (self.run_dir / METRICS).open("a") as fh:
            fh.write(json.dumps({"ts": time.time(), **row}, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _emit(self, phase: str, **fields: Any) -> None:
        if self.on_progress is not None:
            self.on_progress(
                {
                    "phase": phase,
                    "iteration": self.state.iteration,
                    "counted": self.state.counted,
                    "total": self.options.queries,
                    "best": self.state.best,
                    **fields,
                }
            )

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Train until the budget is spent, evaluate, roll back to the best; a summary."""
        self.store = await PolicyStore(self.bus).open()
        await self._config_version()
        version = await self._first_version()
        self._emit("training", version=version)
        await self._calibrate()
        while self.state.counted < self.options.queries:
            if not await self._iteration():
                continue
            every = self.options.eval_every
            if every and self.state.iteration % every == 0:
                await self._evaluate(await self._quiesce())
        if not self.state.finished:
            final = await self._quiesce()
            await self._evaluate(final)
            self.state.final_version = final
            await self._keep_best()
            self.state.finished = True
            self._save()
        summary = self.summary()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        self._emit("done", version=(self.state.best or {}).get("version"))
        return summary

    def summary(self) -> dict[str, Any]:
        """What the run produced: the budget spent, every evaluation, the best version."""
        return {
            "dataset": self.options.dataset,
            "reward": self.options.reward,
            "seed": self.options.seed,
            "batch": self.options.batch,
            "queries": self.state.counted,
            "iterations": self.state.iteration,
            "unplanned_queries": self.state.unplanned,
            "config_version": self.state.config_version,
            "config_name": self.doc.get("name"),
            "evals": self.state.evals,
            "best": self.state.best,
            "final_version": self.state.final_version,
            "wall_s": self.state.wall_s,
            "emulated": not self.options.local and (True if self.options.nats is None else None),
        }

    async def _config_version(self) -> None:
        """Apply the training config, or find it applied by the run this one continues."""
        known = self.state.config_version
        if known:
            try:
                stored = await self.client.get_config(known)
                if stored.get("yaml") == self.config_text:
                    return
            except Exception:  # a fresh NATS (another --nats, a lost store): apply it again
                pass
            log.warning("train.config_reapplied", old_version=known)
        self.state.config_version = await self.client.apply_config(self.config_text, source="train")
        self._save()

    async def _first_version(self) -> int:
        """Wait for the learner to publish the lineage's first version."""
        assert self.store is not None
        deadline = time.monotonic() + self.options.learner_wait_s
        while time.monotonic() < deadline:
            version = await self.store.current_version()
            if version:
                return version
            await asyncio.sleep(0.1)
        raise DriverError(
            f"no policy version was published within {self.options.learner_wait_s:.0f}s: "
            "is a learner running on this NATS?"
        )

    def _next_positions(self) -> list[int]:
        want = min(self.options.batch, self.options.queries - self.state.counted)
        out: list[int] = []
        position = 0
        while len(out) < want:
            if position not in self.state.done:
                out.append(position)
            position += 1
        return out

    async def _ask_all(
        self, items: Sequence[Item], *, config_version: int, explore: bool
    ) -> list[Asked]:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(item: Item) -> Asked:
            async with gate:
                return await ask_graded(
                    self.client,
                    item,
                    config_version=config_version,
                    explore=explore,
                    proposers=self.proposers,
                    timeout_s=self.options.timeout_s,
                    sandbox=self.sandbox,
                )

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _iteration(self) -> bool:
        """One batch of training queries; False when no policy planned any of them."""
        assert self.store is not None
        started = time.monotonic()
        positions = self._next_positions()
        n_train = len(self.train_items)
        group = self.options.hyper.group
        items = [
            self.train_items[item_order(n_train, self.options.seed, p, group)] for p in positions
        ]
        before = await self.store.current_version()
        asked = await self._ask_all(items, config_version=self.state.config_version, explore=True)
        # a query an unreachable endpoint failed is no episode for the learner: ask it again
        counted = [
            (p, a) for p, a in zip(positions, asked, strict=True) if a.sampled and not a.unreachable
        ]
        unreachable = sum(a.sampled and a.unreachable for a in asked)
        unplanned = len(asked) - len(counted) - unreachable
        if not counted:  # no version loaded by the controller yet: ask again shortly
            self.state.unplanned += unplanned
            self._save()
            self._idle += 1
            if self._idle * 0.5 > self.options.learner_wait_s:
                if unreachable:
                    raise DriverError(
                        "every training query failed for an unreachable LLM endpoint: are the "
                        "config's endpoints up?"
                    )
                raise DriverError(
                    "no training query was planned by a policy: does the controller load the "
                    "learner's versions (planner kind 'learned')?"
                )
            await asyncio.sleep(0.5)
            return False
        self._idle = 0
        self.state.done.update(p for p, _ in counted)
        self.state.unplanned += unplanned
        self.state.iteration += 1
        waited, version = await self._wait_update()
        record_metrics: dict[str, float] = {}
        step = None
        if version:
            try:
                record = await self.store.record(version)
                record_metrics, step = record.metrics, record.meta.get("step")
            except PolicyStoreError:
                pass
        rows = [a.row for a in (a for _, a in counted)]
        selection = Selection.total(a.selection for _, a in counted)
        n = len(rows)
        accuracy = sum(r.outcome == "correct" for r in rows) / n
        cost = sum(r.cost_usd for r in rows) / n
        versions = Counter(str(r.policy_version) for r in rows)
        row = {
            "kind": "train",
            "iteration": self.state.iteration,
            "queries": self.state.counted,
            "n": n,
            "unplanned": unplanned,
            "unreachable": unreachable,
            "errors": sum(r.outcome == "error" for r in rows),
            "accuracy": accuracy,
            "cost_per_query_usd": cost,
            "planned_by": dict(versions),
            "version_after": version,
            "step_after": step,
            "learner_wait_s": waited,
            "learner": {k: record_metrics[k] for k in LEARNER_METRICS if k in record_metrics},
            "selection": selection.to_json(),
            "wall_s": time.monotonic() - started,
        }
        self._log(row)
        self._save()
        self._emit(
            "training",
            version=version or before,
            accuracy=accuracy,
            cost=cost,
            mean_reward=record_metrics.get("mean_reward"),
        )
        return True

    async def _step(self, version: int) -> int:
        assert self.store is not None
        if not version:
            return -1
        try:
            return int((await self.store.record(version)).meta.get("step") or 0)
        except PolicyStoreError:
            return -1

    async def _quiesce(self, quiet_s: float = 3.0) -> int:
        """The current version once no new one has come for ``quiet_s`` (``learner_wait_s`` at
        most): the learner has worked off what it was sent."""
        assert self.store is not None
        deadline = time.monotonic() + self.options.learner_wait_s
        version = await self.store.current_version()
        since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            await asyncio.sleep(0.05)
            now = await self.store.current_version()
            if now != version:
                version, since = now, time.monotonic()
        return version

    async def _calibrate(self) -> None:
        """Pair the learner's step with the queries counted, once the learner is quiet.

        From then on ``step0 + (counted - counted0) // batch`` is a lower bound of the
        updates the learner must have made once it has reflected every counted query
        (its buffer held fewer than ``batch`` episodes when calibrated).
        """
        version = await self._quiesce()
        self._calib = (await self._step(version), self.state.counted)

    async def _wait_update(self) -> tuple[float, int]:
        """Wait until the learner has trained on the counted queries (see :meth:`_calibrate`).

        A learner that trains on fewer of them than expected (it rejected some as stale,
        say) is waited for ``learner_wait_s``, then calibrated anew.
        """
        assert self.store is not None and self._calib is not None
        started = time.monotonic()
        step0, counted0 = self._calib
        target = step0 + (self.state.counted - counted0) // self.options.batch
        deadline = started + self.options.learner_wait_s
        while time.monotonic() < deadline:
            version = await self.store.current_version()
            if await self._step(version) >= target:
                return time.monotonic() - started, version
            await asyncio.sleep(0.02)
        self.counters["learner_timeout"] += 1
        log.warning("train.learner_slow", waited_s=self.options.learner_wait_s, target_step=target)
        await self._calibrate()
        return time.monotonic() - started, await self.store.current_version()

    # -- evaluations -------------------------------------------------------------------------

    async def _await_planner(self, version: int) -> None:
        """Wait (10 s at most) until the controller plans with ``version``: greedy probes of
        the first validation item, which the learner grades but never trains on."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            probe = await ask_graded(
                self.client, self.val_items[0], config_version=self.state.config_version,
                explore=False, proposers=self.proposers, timeout_s=self.options.timeout_s,
                sandbox=self.sandbox,
            )  # fmt: skip
            if probe.row.policy_version == version:
                return
            await asyncio.sleep(0.05)

    async def _evaluate(self, version: int) -> None:
        """Greedy accuracy of ``version`` on the validation items; keep its checkpoint."""
        assert self.store is not None
        if not version or any(e["version"] == version for e in self.state.evals):
            return
        self._emit("evaluating", version=version)
        started = time.monotonic()
        await self._await_planner(version)
        asked = await self._ask_all(
            self.val_items, config_version=self.state.config_version, explore=False
        )
        report = EvalReport(
            method=f"v{version}",
            dataset=f"{self.options.dataset}/validation",
            results=[a.row for a in asked],
        )
        summary = report.summary()
        record = await self.store.record(version)
        await self._keep_checkpoint(version)
        row = {
            "kind": "eval",
            "iteration": self.state.iteration,
            "queries": self.state.counted,
            "version": version,
            "step": record.meta.get("step"),
            "n": summary["n"],
            "accuracy": summary["accuracy"],
            "ci95": summary["ci95"],
            "errors": summary["errors"],
            "cost_per_query_usd": summary["cost_per_query_usd"],
            "other_version": sum(a.row.policy_version != version for a in asked),
            "correct": outcome_string([a.row.outcome == "correct" for a in asked]),
            "selection": Selection.total(a.selection for a in asked).to_json(),
            "wall_s": time.monotonic() - started,
        }
        self.state.evals.append(row)
        kept = choose(self.state.evals, self.options.select)
        if kept is not None:
            self.state.best = {k: kept[k] for k in ("version", "step", "accuracy", "ci95",
                                                    "cost_per_query_usd", "queries")}  # fmt: skip
        self._log(row)
        self._save()
        self._emit("training", version=version, eval_accuracy=row["accuracy"], eval_version=version)

    async def _keep_checkpoint(self, version: int) -> None:
        assert self.store is not None
        blob = await self.store.blob(version)
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".v{version}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, folder / f"v{version}.ckpt")

    async def _keep_best(self) -> None:
        """Make the best evaluated version current (the learner follows) and copy it out."""
        assert self.store is not None
        best = self.state.best
        if best is None:
            return
        version = int(best["version"])
        if await self.store.current_version() != version:
            await self.store.rollback(version)
            log.info("train.rollback_to_best", version=version, accuracy=best["accuracy"])
        blob = (self.run_dir / "checkpoints" / f"v{version}.ckpt").read_bytes()
        tmp = self.run_dir / ".best.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, self.run_dir / "best.ckpt")
