"""Stage-2 speed: candidate generation, batched scoring, training throughput.

Each figure comes with a baseline measured in the same run:

1. **candidate generation** (8 nodes): :func:`hieramas.learner.dags.generate_dags`
   (numpy, deduplicated) vs the per-candidate Python loop the old
   ``baselines.random_dag`` ran (``random.Random``, one candidate at a time);
2. **scoring one query's M candidates** (M = 50, 200, 500) for planning: generate +
   score in one batched forward pass (:class:`~hieramas.learner.dagplanning.TopologyChooser`)
   vs scoring the same candidates one graph at a time in a Python loop (what the
   paper's code does); p50 / p95 over ``--reps`` queries, for GATv2Conv and GraphConv,
   on one torch thread (``--threads 1,2`` adds two: on a shared 2-core machine the
   second thread waits for a busy core and makes it much slower); the calling thread's
   CPU time is printed too (the wall clock on a loaded machine includes waiting for a core);
3. **training throughput** (graphs/s): batched epochs of
   :func:`~hieramas.learner.dagtrain.train_classifier` vs a per-sample loop (one forward
   per graph, one backward per minibatch).

Config: ``hieramas/configs/mmlu.yaml`` (8 supernodes, 8 LLMs); node features from a
384-d embedder (the size of the default MiniLM; a hash embedder stands in: the timing
does not depend on the values).  Hidden 64, 2 layers.

    .venv/bin/python bench/classifier.py [--reps 50] [--train-queries 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hieramas.controller.config import HieraConfig, parse_config
from hieramas.learner.classifier import ConvKind, DagClassifierNet
from hieramas.learner.dagplanning import TopologyChooser
from hieramas.learner.dags import generate_dags
from hieramas.learner.dagtrain import DagTrainConfig, bce_loss, train_classifier
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.graphdata import CandidateSet, node_actions
from hieramas.learner.slots import SlotLayout

CONFIG = Path(__file__).resolve().parent.parent / "hieramas" / "configs" / "mmlu.yaml"


def old_random_dag(n: int, rng: random.Random, density: float) -> list[tuple[int, int]]:
    """The replaced ``baselines.random_dag``: one candidate, pure Python."""
    order = list(range(n))
    rng.shuffle(order)
    edges = [(order[rng.randrange(i)], order[i]) for i in range(1, n)]
    tree = set(edges)
    for j in range(1, n):
        for i in range(j):
            if (order[i], order[j]) not in tree and rng.random() < density:
                edges.append((order[i], order[j]))
    return edges


def _best_of(fn: Callable[[], object], reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def generation(count: int) -> None:
    print(f"\n1. candidate generation, 8 nodes, {count} candidates (best of 3)")
    fast = _best_of(lambda: generate_dags(8, count, seed=0))
    raw = _best_of(lambda: generate_dags(8, count, seed=0, unique=False))

    def loop() -> None:
        rng = random.Random(0)
        seen = set()
        for _ in range(count):
            seen.add(frozenset(old_random_dag(8, rng, rng.uniform(0.3, 0.7))))

    slow = _best_of(loop)
    print(f"   generate_dags (dedup):    {fast * 1e3:7.1f} ms  {count / fast:12,.0f} DAGs/s")
    print(f"   generate_dags (no dedup): {raw * 1e3:7.1f} ms  {count / raw:12,.0f} DAGs/s")
    print(f"   old per-candidate loop:   {slow * 1e3:7.1f} ms  {count / slow:12,.0f} DAGs/s")
    print(f"   speed-up: {slow / fast:.1f}x (with dedup)")


def _net(config: HieraConfig, conv: ConvKind) -> DagClassifierNet:
    return DagClassifierNet.create(config, HashEmbedder(384), conv=conv).eval()


def scoring(config: HieraConfig, reps: int, thread_counts: list[int]) -> None:
    layout = SlotLayout.from_config(config)
    acts_list = [layout.action_index(config.decision)] * len(layout.slots)
    acts = node_actions(layout, acts_list)
    query = HashEmbedder(384).embed(["What is the capital of Australia?"])[0]
    print(f"\n2. scoring one query's M candidates (generate + score), p50 / p95 over {reps}")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for conv in ("gatv2", "graph"):
            net = _net(config, conv)  # type: ignore[arg-type]
            for m in (50, 200, 500):
                chooser = TopologyChooser(net, candidates=m)
                times, cpu = [], []
                for i in range(reps + 5):
                    t, c0 = time.perf_counter(), time.thread_time()
                    chooser.choose(query, acts_list, seed=i)
                    times.append(time.perf_counter() - t)
                    cpu.append(time.thread_time() - c0)
                times = sorted(times[5:])
                cpu_p50 = statistics.median(cpu[5:])
                adj = torch.from_numpy(generate_dags(8, m, seed=0))
                loop_reps = max(2, reps // 10)
                loop = []
                with torch.inference_mode():
                    for _ in range(loop_reps):
                        t = time.perf_counter()
                        for c in range(m):
                            net.score_query(query, acts, adj[c : c + 1])
                        loop.append(time.perf_counter() - t)
                p50, p95 = times[len(times) // 2], times[int(0.95 * (len(times) - 1))]
                lp = statistics.median(loop)
                print(
                    f"   threads {threads} {conv:5s} M={m:3d}: batched p50 {p50 * 1e3:6.2f} ms "
                    f"p95 {p95 * 1e3:6.2f} ms (CPU p50 {cpu_p50 * 1e3:5.2f} ms) | per-graph loop p50 {lp * 1e3:7.1f} ms "
                    f"({lp / p50:.0f}x)"
                )
    torch.set_num_threads(1)


def _synthetic(config: HieraConfig, queries: int, per: int) -> CandidateSet:
    layout = SlotLayout.from_config(config)
    rng = np.random.default_rng(0)
    llms = [layout.action_index(m) for m in layout.llms]
    acts = np.stack(
        [
            node_actions(layout, [int(rng.choice(llms)) for _ in layout.slots]).numpy()
            for _ in range(queries)
        ]
    )
    query = HashEmbedder(384).embed([f"q{i}" for i in range(queries)]).numpy()
    adj = generate_dags(8, queries * per, seed=1)
    reward = rng.normal(size=queries * per)
    return CandidateSet.from_numpy(query, acts, adj, np.repeat(np.arange(queries), per), reward)


def training(config: HieraConfig, queries: int, per: int) -> None:
    torch.set_num_threads(1)
    data = _synthetic(config, queries, per)
    train, val = data.split(0.2, seed=0)
    print(
        f"\n3. training throughput: {train.n_candidates} training graphs "
        f"({len(train)} queries x {per}), batches of 32 queries, 1 torch thread"
    )
    for conv in ("gatv2", "graph"):
        for loss in ("bce", "rank"):
            net = DagClassifierNet.create(config, HashEmbedder(384), conv=conv)  # type: ignore[arg-type]
            cfg = DagTrainConfig(loss=loss, epochs=3, patience=100)  # type: ignore[arg-type]
            report = train_classifier(net, train, val, cfg)
            print(
                f"   {conv:5s} {loss:4s}: {report.graphs_per_second:8,.0f} graphs/s "
                f"(3 epochs incl. validation, {report.train_seconds:.1f} s)"
            )
        # baseline: one forward per graph, one backward per minibatch of 32 queries x per
        net = DagClassifierNet.create(config, HashEmbedder(384), conv=conv)  # type: ignore[arg-type]
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        batch = 32 * per
        steps = 3
        t = time.perf_counter()
        for s in range(steps):
            losses = []
            for c in range(s * batch, (s + 1) * batch):
                q = int(train.query_index[c])
                logit = net(train.query[q : q + 1], train.actions[q : q + 1],
                            train.adjacency[c : c + 1], torch.zeros(1, dtype=torch.long))  # fmt: skip
                losses.append(bce_loss(logit, train.label[c : c + 1], 1.0))
            loss = torch.stack(losses).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        dt = time.perf_counter() - t
        print(f"   {conv:5s} per-graph loop: {steps * batch / dt:8,.0f} graphs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--train-queries", type=int, default=300)
    ap.add_argument("--per-query", type=int, default=5)
    ap.add_argument(
        "--threads",
        default="1",
        help="torch thread counts to score with, e.g. 1,2 (planning runs on one: learner.threads)",
    )
    ap.add_argument("--skip", default="", help="comma list of parts to skip: gen,score,train")
    args = ap.parse_args()
    config = parse_config(CONFIG.read_text())
    skip = set(args.skip.split(","))
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average {load:.1f} at start")
    if "gen" not in skip:
        generation(args.count)
    if "score" not in skip:
        scoring(config, args.reps, [int(t) for t in args.threads.split(",")])
    if "train" not in skip:
        training(config, args.train_queries, args.per_query)
    print(f"\n1-min load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
