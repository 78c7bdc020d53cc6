"""``hieramas train --stage 2``: candidate DAGs executed with a frozen Stage-1 policy, then the
classifier trained (both losses), published, and evaluated against fixed topologies.

Phases, all through the embedded stack (real gateway, actors, NATS, the emulator over HTTP):

1. **Data.** For each training query the frozen Stage-1 policy (``--stage1``: a Stage-1 run
   directory's ``best.ckpt`` and ``config.yaml``) assigns the LLMs greedily; ``K`` candidate
   DAGs from :mod:`.dags` (edges of skipped nodes dropped, as the runtime drops them) run
   with that assignment, and each is graded with the deterministic graders into Stage 1's
   cost-aware reward.  Queries run concurrently; within a query the first candidate runs
   alone and the others then together, so that the workers' record/replay cache
   (:class:`CountingCache`) serves every call a later candidate shares with an earlier one
   (same model, same messages: a node whose predecessors' answers are the same) instead
   of paying for it again.  Each finished query is one line of ``candidates.jsonl``,
   appended and flushed; a restart skips the queries there, so a crash loses only the
   queries in flight.
2. **Training.** The top-``k`` candidates of a query with reward > 0 are positive (equal
   rewards ranked by cost, cheaper first: the reward floors for cheap correct queries);
   the classifier is trained with BCE and with the ranking loss on a query split, and
   the better one by per-query validation AUC (then top-1) is kept, written to
   ``classifier.ckpt`` and published as the ``dag.`` series of the run's NATS store.
3. **Evaluation** (``--eval-items``): held-out test items under Stage 1's assignment on
   the classifier's top-1 of ``M`` candidates, a random DAG, the full DAG and a chain, with
   the emulator's latency slept: the summaries into ``summary.json``, each query's DAG,
   LLMs and outcome into ``eval.jsonl`` (read by ``hieramas report``).

Figures are EMULATED unless the stack's LLMs are real.  With ``--nats URL`` (``nats``) the
queries of every phase run on that running stack instead (its controllers, workers and LLMs):
the plans go through the policy store (:mod:`.dagtable`), and the response reuse of phase 1
is not measured (the stack's workers keep no record/replay cache of this run).
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
import torch
import yaml

from hieramas.benchcli import load_items
from hieramas.controller.config import SKIP, HieraConfig, PlannerConfig, parse_config
from hieramas.controller.planner import Assignment, PlanRequest, StaticPlanner
from hieramas.controller.planners import register_planner
from hieramas.controller.vote import combine_votes
from hieramas.evaluation import wilson_interval
from hieramas.learner.checkpoint import decode_checkpoint
from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.dagcheckpoint import ClassifierMeta, encode_classifier
from hieramas.learner.dagplanning import TopologyChooser
from hieramas.learner.dags import (
    active_adjacency,
    edges_of,
    full_adjacency,
    generate_active,
)
from hieramas.learner.dagtable import PlannedClient, table_planner
from hieramas.learner.dagtrain import DagTrainConfig, DagTrainReport, train_classifier
from hieramas.learner.edgereinforce import EdgeReinforce
from hieramas.learner.graphdata import CandidateSet, active_nodes, node_actions
from hieramas.learner.provider import LoadedPolicy
from hieramas.learner.rewards import RewardConfig, cost_reward
from hieramas.learner.roleskip import skip_roles
from hieramas.learner.store import PolicyStore
from hieramas.learner.topologyplanner import classifier_store
from hieramas.llm.cache import ResponseCache
from hieramas.llm.types import ChatRequest, ChatResult, EndpointSpec
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders import agrade

if TYPE_CHECKING:
    from hieramas.bus import Bus
    from hieramas.stack import EmulatorProcess, Stack

__all__ = ["CountingCache", "Stage2Options", "TablePlanner", "run_stage2"]

log = structlog.get_logger(__name__)

DATA_LOG = "candidates.jsonl"
EDGE_LOG = "per-edge.jsonl"
EVAL_LOG = "eval.jsonl"
PLANNER_KIND = "stage2-table"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Stage2Options:
    """One Stage-2 run (see the module docstring)."""

    dataset: str
    run_dir: Path
    stage1: Path
    queries: int = 150
    candidates: int = 5
    concurrency: int = 6
    seed: int = 0
    top_k: int = 2
    d_min: float = 0.3
    d_max: float = 0.7
    score_candidates: int = 200
    eval_items: int = 0
    eval_latency_scale: float = 0.02
    eval_concurrency: int = 8
    data_dir: Path | None = None
    timeout_s: float = 120.0
    epochs: int = 40
    skip_roles: int = 0
    edge_baseline: bool = False
    """Also train the per-edge REINFORCE baseline (:mod:`.edgereinforce`) on the same items."""
    nats: str | None = None
    """A running stack's NATS URL: its controllers, workers and LLMs run the queries."""
    vote_k: int = 0
    """Evaluation also runs the classifier's ``vote_k`` best DAGs and votes their answers
    (:mod:`hieramas.controller.vote`; 0 or 1: not)."""
    """Evaluation also runs the classifier's DAG after role skipping (:mod:`.roleskip`)."""


class CountingCache(ResponseCache):
    """The workers' response cache, counting what it served (calls and their recorded $)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "read-write")
        self.hits = 0
        self.saved_usd = 0.0
        self.paid_calls = 0
        self.paid_usd = 0.0
        self._count_lock = threading.Lock()

    def get(self, key: str) -> ChatResult | None:
        hit = super().get(key)
        if hit is not None:
            with self._count_lock:
                self.hits += 1
                self.saved_usd += hit.cost_usd
        return hit

    def put(
        self, key: str, request: ChatRequest, endpoint: EndpointSpec, result: ChatResult
    ) -> None:
        with self._count_lock:
            self.paid_calls += 1
            self.paid_usd += result.cost_usd
        super().put(key, request, endpoint, result)

    def stats(self) -> dict[str, float]:
        with self._count_lock:
            return {
                "calls_paid": self.paid_calls,
                "calls_reused": self.hits,
                "usd_paid": self.paid_usd,
                "usd_saved": self.saved_usd,
            }


class TablePlanner:
    """Plans each query from a table keyed by its ``item_id`` (set before it is asked);
    unknown items are planned statically.  Light: a dictionary lookup, on the loop."""

    kind = PLANNER_KIND
    heavy = False

    def __init__(self) -> None:
        self.table: dict[str, Assignment] = {}
        self._static = StaticPlanner()

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        found = self.table.get(request.item_id or "")
        return found if found is not None else self._static.assign(config, request)

    async def start(self, bus: Any) -> None:
        pass

    async def stop(self) -> None:
        pass


@dataclass
class _Stage1:
    """The frozen Stage-1 policy and the config it plans."""

    loaded: LoadedPolicy
    config: HieraConfig
    doc: dict[str, Any]
    reward: RewardConfig

    @classmethod
    def load(cls, run_dir: Path) -> _Stage1:
        ckpt = decode_checkpoint((run_dir / "best.ckpt").read_bytes())
        doc = yaml.safe_load((run_dir / "config.yaml").read_text())
        run = (
            json.loads((run_dir / "run.json").read_text())
            if (run_dir / "run.json").exists()
            else {}
        )
        doc["planner"] = {"kind": PLANNER_KIND}
        config = parse_config(yaml.safe_dump(doc, sort_keys=False))
        reward = RewardConfig(alpha=float(run.get("alpha", 0.5)), lam=float(run.get("lam", 300.0)))
        return cls(LoadedPolicy(ckpt, seed=None), config, doc, reward)

    def plan(self, text: str) -> tuple[Assignment, tuple[int, ...], np.ndarray]:
        """Greedy assignment, its actions and the query embedding."""
        planned, assignment = self.loaded.planner.plan_assignment(self.config, text)
        assert planned.embedding is not None
        return assignment, planned.decision.actions, planned.embedding

    @property
    def nodes(self) -> list[str]:
        return list(self.loaded.layout.nodes)

    def active(self, actions: tuple[int, ...]) -> np.ndarray:
        acts = node_actions(self.loaded.layout, actions)
        return np.asarray(active_nodes(self.loaded.layout, acts).numpy())


def _query_seed(seed: int, item_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(item_id.encode())) & 0x7FFF_FFFF


def _read_done(path: Path) -> list[dict[str, Any]]:
    """Finished queries; a torn last line (a crash mid-write) is dropped."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


async def _ask(client: Any, item: Item, item_id: str, timeout_s: float) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await client.ask(
            item.question, domain=item.domain, timeout_s=timeout_s, item_id=item_id
        )
    except Exception as exc:  # the bus failed: an explicit error for this candidate
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return result


async def _graded(item: Item, result: dict[str, Any]) -> bool | None:
    if result.get("status") != "ok":
        return None
    verdict = await agrade(item, str(result.get("text") or ""))
    return verdict.outcome == "correct"


async def _generate(
    client: Any,
    planner: TablePlanner,
    stage1: _Stage1,
    items: list[Item],
    options: Stage2Options,
    log_path: Path,
    on_progress: Progress | None,
    done_before: int,
    edge_learner: EdgeReinforce | None = None,
) -> None:
    """Run each item's candidates and append its line to ``log_path``.  With
    ``edge_learner`` the candidates are its samples, and it learns from each query."""
    gate = asyncio.Semaphore(options.concurrency)
    phase = "data" if edge_learner is None else "per-edge"
    finished = done_before
    total = done_before + len(items)
    write_lock = asyncio.Lock()
    if on_progress is not None:  # where the phase starts (a resumed run's earlier items)
        on_progress(phase, finished, total)

    async def one(item: Item) -> None:
        nonlocal finished
        async with gate:
            base, actions, emb = await asyncio.to_thread(stage1.plan, item.question)
            active = stage1.active(actions)
            if edge_learner is not None:
                adj = edge_learner.sample(active, options.candidates)
            else:  # over the supernodes that run: K distinct connected DAGs (or fewer)
                adj = generate_active(
                    active, options.candidates, seed=_query_seed(options.seed, item.id),
                    d_min=options.d_min, d_max=options.d_max,
                )  # fmt: skip
            for k in range(len(adj)):
                planner.table[f"{item.id}#{k}"] = replace(
                    base, edges=edges_of(adj[k], stage1.nodes)
                )
            first = await _ask(client, item, f"{item.id}#0", options.timeout_s)
            rest = await asyncio.gather(
                *(
                    _ask(client, item, f"{item.id}#{k}", options.timeout_s)
                    for k in range(1, len(adj))
                )
            )
            results = [first, *rest]
            cands: list[dict[str, Any]] = []
            for k, result in enumerate(results):
                planner.table.pop(f"{item.id}#{k}", None)
                solved = await _graded(item, result)
                cost = float(result.get("cost_usd") or 0.0)
                cands.append({
                    "adjacency": np.packbits(adj[k]).tolist(),
                    "status": result.get("status"),
                    "correct": solved,
                    "cost_usd": cost,
                    "latency_s": float(result.get("latency_s") or 0.0),
                    "reward": cost_reward(solved, cost, stage1.reward) if solved is not None else -1.0,
                })  # fmt: skip
            line = {
                "item_id": item.id,
                "actions": list(actions),
                "embedding": np.asarray(emb, dtype=np.float32).tolist(),
                "candidates": cands,
            }
            async with write_lock:  # updates in the order of the log, which a resume replays
                if edge_learner is not None:
                    edge_learner.update(adj, [float(c["reward"]) for c in cands], active)
                with log_path.open("a") as fh:
                    fh.write(json.dumps(line) + "\n")
                    fh.flush()
                finished += 1
            if on_progress is not None:
                on_progress(phase, finished, total)

    await asyncio.gather(*(one(item) for item in items))


def _adjacencies(row: dict[str, Any], n: int) -> np.ndarray:
    """A logged query's candidate adjacencies ``[K, n, n]``."""
    return np.stack([
        np.unpackbits(np.array(c["adjacency"], dtype=np.uint8))[: n * n].reshape(n, n).astype(bool)
        for c in row["candidates"]
    ])  # fmt: skip


def _resume(path: Path) -> list[dict[str, Any]]:
    """The finished queries of ``path``, rewritten without a torn tail (so appends start on
    a fresh line)."""
    done = _read_done(path)
    if done:
        path.write_text("".join(json.dumps(r) + "\n" for r in done))
    return done


def candidate_set(rows: list[dict[str, Any]], stage1: _Stage1, top_k: int) -> CandidateSet:
    """The executed candidates of ``rows`` (``candidates.jsonl`` lines) as tensors."""
    n = len(stage1.nodes)
    layout = stage1.loaded.layout
    query = np.array([r["embedding"] for r in rows], dtype=np.float32)
    actions = np.stack([node_actions(layout, r["actions"]).numpy() for r in rows])
    adj: list[np.ndarray] = []
    qi, reward, cost = [], [], []
    for q, row in enumerate(rows):
        adj.extend(_adjacencies(row, n))
        for c in row["candidates"]:
            qi.append(q)
            reward.append(c["reward"])
            cost.append(c["cost_usd"])
    return CandidateSet.from_numpy(
        query, actions, np.stack(adj), np.array(qi), np.array(reward), top_k=top_k,
        cost=np.array(cost),
    )  # fmt: skip


def _train_both(
    data: CandidateSet, stage1: _Stage1, seed: int, epochs: int
) -> tuple[str, DagClassifierNet, dict[str, DagTrainReport]]:
    train, val = data.split(0.2, seed=seed)
    embedder = stage1.loaded.planner.embedder
    reports: dict[str, DagTrainReport] = {}
    nets: dict[str, DagClassifierNet] = {}
    for loss in ("bce", "rank"):
        net = DagClassifierNet.create(
            stage1.config, embedder, layout=stage1.loaded.layout, seed=seed
        )
        cfg = DagTrainConfig(loss=loss, seed=seed, epochs=epochs)
        reports[loss] = train_classifier(net, train, val, cfg)
        nets[loss] = net

    def key(loss: str) -> tuple[float, float]:
        best = reports[loss].best
        auc, top1 = best.get("auc", math.nan), best.get("top1", math.nan)
        return (-math.inf if math.isnan(auc) else auc, -math.inf if math.isnan(top1) else top1)

    winner = max(("bce", "rank"), key=key)
    return winner, nets[winner], reports


def _chain(active: np.ndarray) -> np.ndarray:
    """The chain through the active nodes in node order."""
    idx = np.flatnonzero(active)
    adj = np.zeros((len(active), len(active)), dtype=bool)
    adj[idx[:-1], idx[1:]] = True
    return adj


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    correct = sum(1 for r in rows if r["correct"])
    low, high = wilson_interval(correct, n)
    lat = sorted(r["latency_s"] for r in rows) or [0.0]
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "ci95": [low, high],
        "errors": sum(1 for r in rows if r["correct"] is None),
        "cost_per_query_usd": statistics.fmean(r["cost_usd"] for r in rows) if rows else 0.0,
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p95_s": float(np.percentile(lat, 95)),
        "edges_mean": statistics.fmean(r["edges"] for r in rows) if rows else 0.0,
    }


def plan_evaluation(
    stage1: _Stage1,
    chooser: TopologyChooser,
    items: list[Item],
    options: Stage2Options,
    edges: EdgeReinforce | None = None,
) -> dict[str, dict[str, Assignment]]:
    """Each evaluated method's plan of each item (deterministic for the run's seed)."""
    n = len(stage1.nodes)
    methods = ["classifier", "random", "full", "chain"]
    if options.skip_roles:
        methods.insert(1, f"classifier+skip{options.skip_roles}")
    if edges is not None:
        methods.append("per-edge")
    if options.vote_k > 1:
        methods.append(f"classifier-vote{options.vote_k}")
    plans: dict[str, dict[str, Assignment]] = {m: {} for m in methods}
    for item in items:
        base, actions, emb = stage1.plan(item.question)
        active = stage1.active(actions)
        seed = _query_seed(options.seed + 1, item.id)
        choice = chooser.choose(torch.from_numpy(emb), actions, seed=seed)
        fixed = {
            "classifier": choice.candidates.adjacency[choice.best],
            "random": generate_active(active, 1, seed=seed)[0],
            "full": active_adjacency(full_adjacency(n), active),
            "chain": _chain(active),
        }
        if edges is not None:
            fixed["per-edge"] = edges.greedy(active)
        for method, adj in fixed.items():
            plans[method][item.id] = replace(base, edges=edges_of(adj, stage1.nodes))
        if options.skip_roles:
            query = torch.from_numpy(emb)
            fewer = skip_roles(stage1.loaded.planner.policy, query, actions, options.skip_roles)
            synth = dict(base.synthesizers)
            for slot, old, now in zip(stage1.loaded.layout.slots, actions, fewer, strict=True):
                if old != now:
                    synth[slot.node] = SKIP
            pick = chooser.choose(query, fewer, seed=seed)
            plans[methods[1]][item.id] = replace(base, synthesizers=synth, edges=pick.edges)
        if options.vote_k > 1:  # the k best of the same scored candidates, one query each
            voters = plans[f"classifier-vote{options.vote_k}"]
            for rank, idx in enumerate(choice.ranked[: options.vote_k]):
                key = item.id if rank == 0 else f"{item.id}#v{rank}"
                voters[key] = replace(base, edges=choice.candidates.edges(idx))
    return plans


def plan_record(assignment: Assignment) -> dict[str, Any]:
    """What a query ran, for ``eval.jsonl``: the supernodes that ran, the edges, the LLMs."""
    return {
        "nodes": [n for n, s in assignment.synthesizers.items() if s != SKIP],
        "edges": [list(e) for e in assignment.edges],
        "proposers": {n: list(p) for n, p in assignment.proposers.items()},
        "synthesizers": dict(assignment.synthesizers),
    }


async def _evaluate(
    client: Any,
    planner: TablePlanner,
    stage1: _Stage1,
    chooser: TopologyChooser,
    items: list[Item],
    options: Stage2Options,
    on_progress: Progress | None,
    edges: EdgeReinforce | None = None,
) -> dict[str, Any]:
    plans = plan_evaluation(stage1, chooser, items, options, edges)
    out: dict[str, Any] = {}
    log_path = options.run_dir / EVAL_LOG
    log_path.unlink(missing_ok=True)  # the evaluation is rerun whole: its rows are rewritten
    if on_progress is not None:
        on_progress("eval", 0, len(plans))
    gate = asyncio.Semaphore(options.eval_concurrency)
    for m_i, (method, table) in enumerate(plans.items()):
        planner.table = dict(table)

        async def one(item: Item, table: dict[str, Assignment] = table) -> dict[str, Any]:
            keys = [item.id, *(f"{item.id}#v{r}" for r in range(1, options.vote_k))]
            keys = [k for k in keys if k in table]  # more than one: a top-k vote
            async with gate:
                results = await asyncio.gather(
                    *(_ask(client, item, k, options.timeout_s) for k in keys)
                )
            result = combine_votes(results) if len(results) > 1 else results[0]
            return {
                "correct": await _graded(item, result),
                "cost_usd": float(result.get("cost_usd") or 0.0),
                "latency_s": float(result.get("latency_s") or 0.0),
                "edges": sum(len(table[k].edges) for k in keys),
                "voters": len(keys),
            }

        rows = await asyncio.gather(*(one(item) for item in items))
        out[method] = _summary(list(rows))
        with log_path.open("a") as fh:  # each query's DAG and LLMs, for hieramas report
            for item, row in zip(items, rows, strict=True):
                record = {"method": method, "item_id": item.id, **plan_record(table[item.id])}
                fh.write(json.dumps({**row, **record}) + "\n")  # edges: the list
        if on_progress is not None:
            on_progress("eval", m_i + 1, len(plans))
    return out


def _emulator(options: Stage2Options, latency_scale: float) -> EmulatorProcess | None:
    """The run's emulator (started); none against a running stack, whose LLMs are its own."""
    from hieramas.stack import EmulatorProcess

    if options.nats:
        return None
    return EmulatorProcess(seed=options.seed, latency_scale=latency_scale).start()


def _stack(options: Stage2Options, emulator: EmulatorProcess | None, **kw: Any) -> Stack:
    """The embedded stack (NATS in the run directory), or only a connection to ``--nats``."""
    from hieramas.stack import Stack

    if options.nats:
        return Stack(nats_url=options.nats, controller=False, workers=0)
    assert emulator is not None
    return Stack(state_dir=options.run_dir / "nats", emulator_url=emulator.url, **kw)


async def _client(bus: Bus, planner: TablePlanner, options: Stage2Options) -> Any:
    """The client that asks the queries: against ``--nats`` it stores each query's plan first."""
    from hieramas.controller.client import HieraClient

    client = HieraClient(bus)
    if not options.nats:
        return client
    return PlannedClient(client, planner, await PolicyStore(bus).open())


def run_stage2(options: Stage2Options, on_progress: Progress | None = None) -> dict[str, Any]:
    """Generate (or resume) the data, train and publish the classifier, evaluate."""
    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    planner = TablePlanner()
    register_planner(PLANNER_KIND, lambda _spec: planner)  # before the config names it
    stage1 = _Stage1.load(options.stage1)
    if options.nats:  # any controller of the running stack plans from the stored plans
        stage1.doc["planner"] = table_planner(stage1.loaded.version)
    config_text = yaml.safe_dump(stage1.doc, sort_keys=False)
    (run_dir / "config.yaml").write_text(config_text)
    opts_json = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    (run_dir / "run.json").write_text(json.dumps(opts_json, indent=1))
    train_items, _ = load_items(options.dataset, "train", None, options.seed, options.data_dir)
    train_items = train_items[: options.queries]
    log_path = run_dir / DATA_LOG
    done = _resume(log_path)
    seen = {r["item_id"] for r in done}
    todo = [it for it in train_items if it.id not in seen]
    edge_log = run_dir / EDGE_LOG
    edge_done = _resume(edge_log) if options.edge_baseline else []
    edge_seen = {r["item_id"] for r in edge_done}
    edge_todo = (
        [it for it in train_items if it.id not in edge_seen] if options.edge_baseline else []
    )
    edges = EdgeReinforce(len(stage1.nodes), seed=options.seed)
    for row in edge_done:  # the learner's state is its updates, replayed in the log's order
        edges.update(_adjacencies(row, len(stage1.nodes)), [c["reward"] for c in row["candidates"]],
                     stage1.active(tuple(row["actions"])))  # fmt: skip
    summary: dict[str, Any] = {"emulated": options.nats is None or None, "dataset": options.dataset}

    cache = CountingCache(run_dir / "llm-cache.sqlite")
    spec = PlannerConfig(kind=PLANNER_KIND)
    started = time.monotonic()
    if todo or edge_todo:
        emulator = _emulator(options, 0.0)
        try:
            with _stack(options, emulator, planner=spec, llm_cache=cache) as stack:
                assert stack.bus is not None
                client = stack.bus.call(_client(stack.bus, planner, options), 30)
                stack.bus.call(client.apply_config(config_text, source="stage2"), 30)
                stack.bus.call(
                    _generate(
                        client, planner, stage1, todo, options, log_path, on_progress, len(done)
                    ),
                    None,
                )
                if edge_todo:  # the per-edge baseline: same items, same K, same reward
                    stack.bus.call(
                        _generate(client, planner, stage1, edge_todo, options, edge_log,
                                  on_progress, len(edge_done), edges),
                        None,
                    )  # fmt: skip
        finally:
            if emulator is not None:
                emulator.stop()
    summary["data_seconds"] = time.monotonic() - started
    if options.edge_baseline:
        summary["per_edge"] = {
            "updates": edges.updates,
            "edge_probs": np.round(edges.probs(), 3).tolist(),
        }
    summary["reuse"] = cache.stats()
    summary["reuse_measured"] = options.nats is None  # else the stack's workers served
    rows = _read_done(log_path)
    data = candidate_set(rows, stage1, options.top_k)
    summary["data"] = {
        "queries": len(data),
        "candidates": data.n_candidates,
        "positives": int(data.label.sum()),
        "queries_with_a_positive": int(
            torch.zeros(len(data)).index_add_(0, data.query_index, data.label).gt(0).sum()
        ),
    }
    if on_progress is not None:
        on_progress("train", 0, 2)
    winner, net, reports = _train_both(data, stage1, options.seed, options.epochs)
    summary["training"] = {
        loss: {"best_epoch": r.best_epoch, **r.best, "graphs_per_s": r.graphs_per_second}
        for loss, r in reports.items()
    }
    summary["winner"] = winner
    if on_progress is not None:
        on_progress("train", 2, 2)
    meta = ClassifierMeta(
        version=0, parent=None, config_name=stage1.config.name, config_version=1,
        layout=net.layout.to_json(), embedder=stage1.loaded.meta.embedder, dim=net.dim,
        seed=options.seed, net=net.hyper(), train=DagTrainConfig(loss=winner).to_json(),  # type: ignore[arg-type]
        metrics={k: float(v) for k, v in reports[winner].best.items()},
        policy_version=stage1.loaded.version,
    )  # fmt: skip

    def encode(version: int) -> tuple[bytes, dict[str, Any]]:
        blob = encode_classifier(net, replace(meta, version=version))
        (run_dir / "classifier.ckpt").write_bytes(blob)
        return blob, {"kind": "dag-classifier", "loss": winner, "metrics": meta.metrics}

    chooser = TopologyChooser(
        net, candidates=options.score_candidates, d_min=options.d_min, d_max=options.d_max,
        top_k=max(1, options.vote_k),
    )  # fmt: skip
    emulator = _emulator(options, options.eval_latency_scale)
    try:
        with _stack(options, emulator, planner=spec) as stack:
            assert stack.bus is not None
            bus = stack.bus

            async def publish() -> int:
                store = await classifier_store(bus).open()
                await PolicyStore(bus).open()
                return (await store.publish(encode, source="stage2")).version

            summary["published_version"] = bus.call(publish(), 60)
            if options.eval_items:
                client = bus.call(_client(bus, planner, options), 30)
                bus.call(client.apply_config(config_text, source="stage2-eval"), 30)
                test_items, _ = load_items(
                    options.dataset, "test", options.eval_items, options.seed, options.data_dir
                )
                summary["eval"] = bus.call(
                    _evaluate(
                        client,
                        planner,
                        stage1,
                        chooser,
                        test_items,
                        options,
                        on_progress,
                        edges if options.edge_baseline else None,
                    ),
                    None,
                )
                summary["eval_items"] = len(test_items)
                summary["eval_latency_scale"] = options.eval_latency_scale
    finally:
        if emulator is not None:
            emulator.stop()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
