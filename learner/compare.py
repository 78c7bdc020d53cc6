"""A learned policy against the baselines, on the same items: accuracy ± 95% CI, cost, Pareto plot.

``hieramas compare RUN_DIR [--ablation RUN_DIR]`` evaluates, on the first ``limit``
items of the test split of the run's dataset (the run's split seed):

- ``learned:multi`` the run's best version (``best.ckpt``), decoded as the run
  evaluated it (greedy, or top-n rotation after ``train --decode rotation``);
- ``learned:final`` the best version of the final-reward-only run given by
  ``--ablation`` (trained with the same budget and seed);
- with ``--rotation``, also ``learned:multi/rotation`` (and ``learned:final/rotation``):
  the same versions decoding with the paper's top-n rotation instead of greedily
  (each synthesizer its best LLM, the proposers of a supernode the top n in turn);
- ``random-slots`` the same config, each slot's LLM drawn uniformly per query
  (planner kind ``random``, the run's seed);
- ``all-slots@BEST`` / ``all-slots@CHEAPEST`` the same config with every proposer and
  synthesizer on the pool's strongest (highest target accuracy for the domain) or
  cheapest model; the decision LLM stays the config's, as it does for the policy;
- ``self-consistency@BEST`` ``k`` samples of the strongest model at temperature 0.7,
  plurality vote (:func:`hieramas.tasks.baselines.self_consistency`).

Everything runs through one embedded stack (nats-server, the emulator with the run's
profiles and seed, controller, worker; no learner), as ``hieramas bench`` does.  The
checkpoints are published into that stack's policy store and each learned method's
config is pinned to its version (:mod:`.pinned`).  Rows are appended to
``compare.jsonl`` as they are graded, so an interrupted comparison resumes;
``compare.json`` holds the summaries and ``compare.png`` the accuracy-vs-cost plot
with the Pareto front (:func:`hieramas.report.figures.accuracy_cost`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hieramas.benchcli import load_items
from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.controller.config import parse_config
from hieramas.emulator.profiles import load_profiles
from hieramas.evaluation import EvalReport, ItemResult
from hieramas.learner.checkpoint import decode_checkpoint, encode_checkpoint
from hieramas.learner.driver import DRIVER_STATE, DriverError, DriverState
from hieramas.learner.pinned import pinned_planner
from hieramas.learner.policy import DecodeMode
from hieramas.learner.querying import Asked, Selection, ask_graded
from hieramas.learner.store import PolicyStore
from hieramas.learner.trainconfig import (
    DOMAIN_OF,
    best_model,
    cheapest_model,
    pool_of,
    to_yaml,
    with_planner,
)
from hieramas.report.figures import accuracy_cost, pareto_front
from hieramas.tasks import baselines
from hieramas.tasks.datasets import Item
from hieramas.tasks.sandbox import Sandbox

__all__ = [
    "CompareOptions",
    "Method",
    "compare_methods",
    "pareto_front",
    "plan_methods",
    "run_compare",
]

ROWS = "compare.jsonl"


@dataclass(frozen=True)
class CompareOptions:
    """``hieramas compare`` options."""

    run_dir: Path
    ablation: Path | None = None
    split: str = "test"
    limit: int | None = 500
    concurrency: int = 8
    k: int = 5
    out_dir: Path | None = None
    data_dir: Path | None = None
    timeout_s: float = 120.0
    profiles: str | None = None
    """Emulator profiles (default: the run's, from its ``--profiles``; else the package's)."""
    rotation: bool = False
    """Also evaluate each learned version with the top-n rotation decoder."""

    @property
    def out(self) -> Path:
        return self.out_dir or self.run_dir / "compare"


@dataclass(frozen=True)
class Method:
    """One compared method: its label, its config document, and a checkpoint to pin, if any."""

    label: str
    doc: dict[str, Any]
    checkpoint: Path | None = None
    mode: DecodeMode = "greedy"
    """How a learned method decodes (``greedy`` or ``rotation``)."""


def _mode(doc: dict[str, Any]) -> DecodeMode:
    """How a run's learned planner decoded its evaluations (``train --decode``)."""
    mode = (doc.get("planner") or {}).get("mode", "greedy")
    return "rotation" if mode == "rotation" else "greedy"


def _run_info(run_dir: Path) -> tuple[DriverState, dict[str, Any]]:
    state = DriverState.load(run_dir / DRIVER_STATE)
    if state is None:
        raise DriverError(f"{run_dir} holds no training run")
    if not (run_dir / "best.ckpt").exists():
        raise DriverError(f"{run_dir} has no best.ckpt yet: its training has not finished")
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    return state, dict(doc)


def _all_slots(doc: dict[str, Any], model: str) -> dict[str, Any]:
    """``doc`` with every proposer and synthesizer on ``model`` (decision unchanged), static."""
    out = json.loads(json.dumps(doc))
    out.pop("planner", None)
    out["name"] = f"all-slots-{model}"
    for spec in out["supernodes"].values():
        spec["proposers"] = [model] * len(spec["proposers"])
        spec["synthesizer"] = model
    return dict(out)


def plan_methods(options: CompareOptions, profiles_path: str | None) -> list[Method]:
    """The methods to compare (see the module docstring)."""
    state, doc = _run_info(options.run_dir)
    dataset = str(state.identity["dataset"])
    seed = int(state.identity["seed"])
    domain = DOMAIN_OF[dataset]
    profiles = load_profiles(profiles_path)
    pool = pool_of(profiles, list(doc["llms"]))
    best, cheap = best_model(profiles, domain, pool), cheapest_model(profiles, pool)
    reward = str(state.identity.get("reward", "multi"))
    methods = [Method(f"learned:{reward}", doc, options.run_dir / "best.ckpt", _mode(doc))]
    if options.ablation is not None:
        other, other_doc = _run_info(options.ablation)
        same = {k: v for k, v in other.identity.items() if k != "reward"} == {
            k: v for k, v in state.identity.items() if k != "reward"
        }
        if not same:
            raise DriverError(
                f"{options.ablation} was trained with other options than {options.run_dir} "
                "(the ablation must share everything but the reward)"
            )
        methods.append(
            Method(
                f"learned:{other.identity.get('reward', '?')}",
                other_doc,
                options.ablation / "best.ckpt",
                _mode(other_doc),
            )
        )
    random_doc = with_planner(json.loads(json.dumps(doc)), {"kind": "random", "seed": seed})
    random_doc["name"] = "random-slots"
    if options.rotation:
        methods += [
            replace(m, label=f"{m.label}/rotation", mode="rotation")
            for m in methods
            if m.checkpoint and m.mode != "rotation"
        ]
    methods.append(Method("random-slots", random_doc))
    methods.append(Method(f"all-slots@{best}", _all_slots(doc, best)))
    methods.append(Method(f"all-slots@{cheap}", _all_slots(doc, cheap)))
    sc = baselines.self_consistency(
        pool, domain, baselines.Options(model=best, k=options.k, temperature=0.7)
    )
    methods.append(Method(f"self-consistency@{best}", sc))
    return methods


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut by a kill: asked again
            continue
    return rows


async def publish_checkpoint(
    store: PolicyStore, checkpoint: Path, *, make_current: bool = False, source: str = "compare"
) -> int:
    """Publish ``checkpoint`` into this stack's store (renumbered; current if ``make_current``)."""
    loaded = await asyncio.to_thread(lambda: decode_checkpoint(checkpoint.read_bytes()))
    policy = loaded.policy()

    def encode(version: int) -> tuple[bytes, dict[str, Any]]:
        meta = replace(loaded.meta, version=version)
        record = {k: v for k, v in asdict(meta).items() if k != "layout"}
        record["source_checkpoint"] = str(checkpoint)
        record["source_version"] = loaded.meta.version
        return encode_checkpoint(policy, meta), record

    record = await store.publish(encode, source=source, make_current=make_current)
    return record.version


async def compare_methods(
    bus: Bus,
    methods: Sequence[Method],
    items: Sequence[Item],
    options: CompareOptions,
    on_row: Callable[[str, int, int], None] | None,
) -> dict[str, list[Asked | dict[str, Any]]]:
    """Ask ``items`` greedily under each method's config (applied in turn on ``bus``; a
    checkpoint published and pinned first), append each graded row to ``compare.jsonl`` in
    ``options.out`` and skip rows already there; per method label, its rows."""
    client = HieraClient(bus, sender="compare")
    store = await PolicyStore(bus).open()
    out = options.out
    done: dict[str, dict[str, dict[str, Any]]] = {}
    for row in _read_rows(out / ROWS):
        if row.get("outcome") != "error":
            done.setdefault(row["method"], {})[row["item_id"]] = row
    sandbox = Sandbox() if items and items[0].domain == "humaneval" else None
    results: dict[str, list[Asked | dict[str, Any]]] = {}
    for method in methods:
        doc = method.doc
        if method.checkpoint is not None:
            version = await publish_checkpoint(store, method.checkpoint)
            doc = with_planner(doc, pinned_planner(version, method.mode))
            doc["name"] = f"{doc.get('name', 'policy')}-pinned"
        config = parse_config(to_yaml(doc))
        proposers = {n: len(s.proposers) for n, s in config.supernodes.items()}
        config_version = await client.apply_config(to_yaml(doc), source="compare")
        prior = done.get(method.label, {})
        todo = [item for item in items if item.id not in prior]
        gate = asyncio.Semaphore(options.concurrency)
        count = [len(items) - len(todo)]
        if on_row is not None:  # where the method starts (rows of an earlier run count)
            on_row(method.label, count[0], len(items))

        async def one(
            item: Item, label: str = method.label, cv: int = config_version,
            props: dict[str, int] = proposers, n: list[int] = count,
            gate: asyncio.Semaphore = gate,
        ) -> Asked:  # fmt: skip
            async with gate:
                asked = await ask_graded(
                    client, item, config_version=cv, explore=False, proposers=props,
                    timeout_s=options.timeout_s, sandbox=sandbox,
                )  # fmt: skip
            row = {"method": label, **asdict(asked.row), "selection": asked.selection.to_json()}
            with (out / ROWS).open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            n[0] += 1
            if on_row is not None:
                on_row(label, n[0], len(items))
            return asked

        asked = await asyncio.gather(*(one(item) for item in todo))
        results[method.label] = [*prior.values(), *asked]
    return results


def _summary(label: str, rows: Sequence[Asked | dict[str, Any]], dataset: str) -> dict[str, Any]:
    names = set(ItemResult.__dataclass_fields__)
    results, selections = [], []
    for row in rows:
        if isinstance(row, Asked):
            results.append(row.row)
            selections.append(row.selection)
        else:
            results.append(ItemResult(**{k: v for k, v in row.items() if k in names}))
            selections.append(Selection.from_json(row.get("selection") or {}))
    report = EvalReport(method=label, dataset=dataset, results=results, emulated=True)
    summary = report.summary()
    summary["selection"] = Selection.total(selections).to_json()
    return summary


def run_compare(
    options: CompareOptions, on_row: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Run the comparison (see the module docstring); the ``compare.json`` document."""
    from hieramas.stack import EmulatorProcess, Stack

    state, _ = _run_info(options.run_dir)
    identity = state.identity
    dataset, seed = str(identity["dataset"]), int(identity["seed"])
    profiles = options.profiles or _run_profiles(options.run_dir)
    methods = plan_methods(options, profiles)
    items, label = load_items(dataset, options.split, options.limit, seed, options.data_dir)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    emulator = EmulatorProcess(seed=seed, latency_scale=0.0, profiles=profiles).start()
    try:
        with Stack(emulator_url=emulator.url) as stack:
            assert stack.bus is not None
            results = stack.bus.call(
                compare_methods(stack.bus, methods, items, options, on_row), timeout=None
            )
    finally:
        emulator.stop()
    summaries = [_summary(m.label, results[m.label], label) for m in methods]
    for s in summaries:
        s["split_seed"] = seed
    doc = {
        "dataset": label,
        "split_seed": seed,
        "emulator_seed": seed,
        "profiles": profiles or "emulator/profiles.yaml (package default)",
        "run_dir": str(options.run_dir),
        "ablation": str(options.ablation) if options.ablation else None,
        "summaries": summaries,
        "pareto_front": [
            summaries[i]["method"]
            for i in pareto_front([(s["cost_per_query_usd"], s["accuracy"]) for s in summaries])
        ],
        "emulated": True,
    }
    (out / "compare.json").write_text(json.dumps(doc, indent=1))
    accuracy_cost(
        summaries,
        out / "compare.png",
        f"EMULATED {label}, first {len(items)} items (split seed {seed})",
    )
    return doc


def _run_profiles(run_dir: Path) -> str | None:
    """The profile file the run trained on (recorded by the CLI in ``run.json``)."""
    try:
        return json.loads((run_dir / "run.json").read_text()).get("profiles")  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return None
