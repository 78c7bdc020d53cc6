"""The demo's evaluation: a live policy update under a query stream, then the learned system
against baselines on held-out items, all through one embedded stack.

:func:`evaluate_demo` starts the emulator and a stack (nats-server with a temporary store,
controller, worker), publishes a Stage-1 policy and the Stage-2 classifier into the stack's
stores and applies the Stage-1 config with the ``stage2`` planner (the policy assigns the
LLMs, the classifier picks the DAG).  Then:

1. **Live update.** ``live`` held-out items stream through it, a few at a time.  When half
   are answered, the Stage-1 run's best checkpoint is published as a new policy version
   while the rest are in flight or still to come; the controller follows the store and
   plans the next queries with it, without a restart.  Which version planned each query is
   read back from the trace stream's ``query`` events (``policy_version`` and ``started``),
   not from this module's own bookkeeping.
2. **Methods.** The learned system (both stages, the best policy now current) and the
   baselines answer the same held-out items greedily, through
   :func:`~hieramas.learner.compare.compare_methods`: Stage 1 alone (its config's complete
   DAG, the best version pinned), the hand-written ``configs/mmlu.yaml``, random slot
   assignment and self-consistency on the pool's strongest model.

Every figure is EMULATED.  Writes ``evaluation.json`` (one summary per method),
``evaluation.jsonl`` (one row per query, with the DAG and LLMs its plan chose, from the
traces), ``live_update.json`` and ``trace.jsonl`` (the live queries' trace events) into the
demo directory.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.evaluation import EvalReport
from hieramas.learner.compare import CompareOptions, Method, compare_methods, plan_methods
from hieramas.learner.compare import publish_checkpoint as publish_policy
from hieramas.learner.dagcheckpoint import decode_classifier, encode_classifier
from hieramas.learner.querying import Asked, ask_graded
from hieramas.learner.store import PolicyStore
from hieramas.learner.topologyplanner import classifier_store
from hieramas.learner.trainconfig import to_yaml, with_planner
from hieramas.tasks.datasets import Item
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import Event, QueryDone, event_json

__all__ = ["LEARNED", "EvalError", "EvalPlan", "evaluate_demo"]

LEARNED = "HieraMAS learned (Stage 1 + Stage 2)"
STAGE1_ONLY = "Stage 1 only (complete DAG)"
HAND_WRITTEN = "hand-written config (configs/mmlu.yaml)"

Progress = Callable[[str, int, int], None]


class EvalError(RuntimeError):
    """The evaluation stack did not do what the demo needs (a version never planned with)."""


@dataclass(frozen=True)
class EvalPlan:
    """What the evaluation runs."""

    out: Path
    stage1: Path
    stage2: Path
    items: Sequence[Item]
    live: int
    seed: int = 0
    concurrency: int = 8
    latency_scale: float = 0.0
    candidates: int = 200
    timeout_s: float = 120.0


def _versions(stage1: Path) -> tuple[Path, Path]:
    """The checkpoints planned before and after the live update: the Stage-1 run's earliest
    evaluated version other than its best (the best itself when it is the only one), and
    ``best.ckpt``."""
    best = json.loads((stage1 / "summary.json").read_text()).get("best") or {}
    found = sorted(
        (int(m.group(1)), p)
        for p in (stage1 / "checkpoints").glob("v*.ckpt")
        if (m := re.fullmatch(r"v(\d+)\.ckpt", p.name))
    )
    others = [p for v, p in found if v != best.get("version")]
    return (others[0] if others else stage1 / "best.ckpt"), stage1 / "best.ckpt"


def _methods(plan: EvalPlan, learned_doc: dict[str, Any]) -> list[Method]:
    options = CompareOptions(run_dir=plan.stage1)
    baseline = {m.label.split("@")[0]: m for m in plan_methods(options, None)}
    hand = yaml.safe_load(resources.files("hieramas").joinpath("configs/mmlu.yaml").read_text())
    stage1 = next(m for label, m in baseline.items() if label.startswith("learned:"))
    sc = baseline["self-consistency"]
    return [
        Method(LEARNED, learned_doc),
        Method(STAGE1_ONLY, stage1.doc, stage1.checkpoint, stage1.mode),
        Method(HAND_WRITTEN, dict(hand)),
        Method("random slots", baseline["random-slots"].doc),
        Method(sc.label, sc.doc),
    ]


async def _await_version(client: HieraClient, item: Item, version: int, cv: int) -> None:
    """Until the controller plans with policy ``version`` (greedy probes, 60 s at most)."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        result = await client.ask(
            item.question, domain=item.domain, config_version=cv, timeout_s=60.0
        )
        if result.get("policy_version") == version:
            return
        await asyncio.sleep(0.1)
    raise EvalError(f"the controller did not plan with policy v{version} within 60 s")


async def _live(
    bus: Bus,
    client: HieraClient,
    plan: EvalPlan,
    cv: int,
    proposers: dict[str, int],
    after: Path,
    on_progress: Progress | None,
) -> dict[str, Any]:
    """Stream the live items; publish ``after`` once half are answered (see the module doc)."""
    items = list(plan.items[: plan.live])
    gate = asyncio.Semaphore(max(2, plan.concurrency // 2))
    answered = running = 0
    published: dict[str, Any] = {}

    async def one(item: Item) -> Asked:
        nonlocal answered, running
        async with gate:
            running += 1
            asked = await ask_graded(
                client, item, config_version=cv, explore=False, proposers=proposers,
                timeout_s=plan.timeout_s,
            )  # fmt: skip
            running -= 1
        answered += 1
        if on_progress is not None:
            on_progress("live policy update", answered, len(items))
        if answered >= max(1, len(items) // 2) and not published:
            published["unix"] = time.time()
            store = await PolicyStore(bus).open()
            published["version"] = await publish_policy(
                store, after, make_current=True, source="demo-live"
            )
            published["in_flight"] = running  # asked under the old version, still running
        return asked

    await asyncio.gather(*(one(item) for item in items))
    return published


def _summaries(
    results: dict[str, list[Asked | dict[str, Any]]], dags: list[dict[str, Any]], seed: int
) -> list[Any]:
    out = []
    for label, rows in results.items():
        asked = [r for r in rows if isinstance(r, Asked)]
        report = EvalReport(
            label, "mmlu_redux/test", [a.row for a in asked], emulated=True, split_seed=seed
        )
        summary = report.summary()
        versions = Counter(str(a.row.policy_version) for a in asked if a.row.policy_version)
        summary["policy_versions"] = dict(versions)
        traced = [d for d in dags if d["method"] == label and "edges" in d]
        if traced:  # what the queries' traces say they ran
            summary["edges_mean"] = statistics.fmean(len(d["edges"]) for d in traced)
            summary["supernodes_mean"] = statistics.fmean(len(d.get("nodes") or ()) for d in traced)
        out.append(summary)
    return out


def _dag_rows(
    results: dict[str, list[Asked | dict[str, Any]]], done: dict[tuple[int, str], QueryDone]
) -> list[dict[str, Any]]:
    """One row per evaluated query, with what its trace says it ran."""
    rows = []
    for label, asked in results.items():
        for a in asked:
            if not isinstance(a, Asked):
                continue
            event = done.get((a.row.config_version, a.row.item_id))
            row: dict[str, Any] = {"method": label, **asdict(a.row)}
            if event is not None:
                row["query_id"] = event.query_id
                row["edges"] = [list(e) for e in event.edges]
                if event.assignment is not None:
                    row.update(msgspec.to_builtins(event.assignment))
                    row["nodes"] = [
                        n for n, s in event.assignment.synthesizers.items() if s != "skip"
                    ]
                topology = getattr(event, "topology", None)  # the Stage-2 planner's choice
                if topology is not None:
                    row["topology"] = msgspec.to_builtins(topology)
            rows.append(row)
    return rows


def _live_report(
    events: list[Event], cv: int, published: dict[str, Any], before_version: int
) -> dict[str, Any]:
    """Which policy version planned each live query, read from its ``query`` trace event."""
    live = sorted(
        (e for e in events if isinstance(e, QueryDone) and e.config_version == cv),
        key=lambda e: e.started or e.finished - e.latency_s,
    )
    at = float(published.get("unix", 0.0))
    before = [e for e in live if (e.started or 0.0) < at]
    after = [e for e in live if (e.started or 0.0) >= at]
    return {
        "config_version": cv,
        "first_version": before_version,
        "published_version": published.get("version"),
        "published_unix": at,
        "queries": len(live),
        "in_flight_at_publish": published.get("in_flight"),
        "started_before": dict(Counter(str(e.policy_version) for e in before)),
        "started_after": dict(Counter(str(e.policy_version) for e in after)),
        "sequence": [
            {"query_id": e.query_id, "started": e.started, "policy_version": e.policy_version}
            for e in live
        ],
        "query_ids": [e.query_id for e in live],
    }


async def _run(
    bus: Bus,
    plan: EvalPlan,
    on_progress: Progress | None,
    flush: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    client = HieraClient(bus, sender="demo")
    first, best = _versions(plan.stage1)
    policies = await PolicyStore(bus).open()
    first_version = await publish_policy(policies, first, make_current=True, source="demo")
    classifier = decode_classifier((plan.stage2 / "classifier.ckpt").read_bytes())
    net = classifier.net()

    def renumbered(version: int) -> tuple[bytes, dict[str, Any]]:  # a provider checks it
        blob = encode_classifier(net, replace(classifier.meta, version=version))
        return blob, {"kind": "dag-classifier", "source_version": classifier.meta.version}

    await (await classifier_store(bus).open()).publish(renumbered, source="demo")
    doc = yaml.safe_load((plan.stage1 / "config.yaml").read_text())
    learned = with_planner(doc, {"kind": "stage2", "candidates": plan.candidates})
    learned["name"] = "hieramas-learned"
    cv = await client.apply_config(to_yaml(learned), source="demo")
    proposers = {n: len(s["proposers"]) for n, s in learned["supernodes"].items()}
    await _await_version(client, plan.items[0], first_version, cv)
    published = await _live(bus, client, plan, cv, proposers, best, on_progress)
    await _await_version(client, plan.items[0], int(published["version"]), cv)

    options = CompareOptions(
        run_dir=plan.stage1, out_dir=plan.out / "evaluation", concurrency=plan.concurrency,
        timeout_s=plan.timeout_s, limit=None,
    )  # fmt: skip
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "compare.jsonl").unlink(missing_ok=True)  # a fresh stack: ask everything
    methods = _methods(plan, learned)

    def on_row(label: str, n: int, total: int) -> None:
        if on_progress is not None:
            on_progress(f"evaluate: {label}", n, total)

    results = await compare_methods(bus, methods, plan.items, options, on_row)
    await flush()  # every event emitted so far is in the stream
    events = await replay(bus, Subjects(), idle_s=1.0, limit=10_000_000)
    done = {
        (e.config_version, e.item_id or ""): e
        for e in events
        if isinstance(e, QueryDone) and e.config_version != cv
    }
    live = _live_report(events, cv, published, first_version)
    ids = set(live.pop("query_ids"))
    with (plan.out / "trace.jsonl").open("w") as fh:
        for event in events:
            if event.query_id in ids:
                fh.write(event_json(event) + "\n")
    dags = _dag_rows(results, done)
    with (plan.out / "evaluation.jsonl").open("w") as fh:
        for row in dags:
            fh.write(json.dumps(row, default=str) + "\n")
    return {
        "methods": _summaries(results, dags, plan.seed),
        "live": live,
        "policy_before": str(first),
        "policy_after": str(best),
    }


def evaluate_demo(plan: EvalPlan, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run the evaluation (see the module docstring); writes its files, returns its facts."""
    from hieramas.stack import EmulatorProcess, Stack

    emulator = EmulatorProcess(seed=plan.seed, latency_scale=plan.latency_scale).start()
    try:
        with Stack(emulator_url=emulator.url) as stack:
            assert stack.bus is not None and stack.controller is not None
            controller, workers = stack.controller, stack.workers

            async def flush() -> None:
                await controller.traces.flush()
                for worker in workers:
                    await worker.ctx.traces.flush()

            return dict(stack.bus.call(_run(stack.bus, plan, on_progress, flush), timeout=None))
    finally:
        emulator.stop()
