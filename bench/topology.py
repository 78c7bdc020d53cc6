"""Does the DAG matter in the emulator?  Same items, same LLM assignment, different DAGs.

Runs through the embedded stack (real gateway, actors, NATS and the emulator over HTTP,
as ``hieramas bench`` does) the HieraMAS mixture of the MMLU roles (the seeded
``hieramas-full`` assignment) on the full DAG, a chain, no edges and ``--dags`` random
DAGs from the Stage-2 generator, and prints accuracy, cost, tokens and latency per DAG.
The emulator's latency is slept, scaled by ``--latency-scale``, so latency follows the
DAG's depth.  Sampling noise: the full DAG and the first random DAG again under
``--noise-seeds`` other emulator seeds (the per-call randomness changes, nothing else).
Figures are EMULATED.

    .venv/bin/python bench/topology.py [--items 30] [--dags 8] [--latency-scale 0.02]
        [--noise-seeds 3] [--dataset mmlu] [--models llama-8b,qwen3-8b,...]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

from hieramas.benchcli import DATASETS, load_items
from hieramas.controller.client import HieraClient
from hieramas.evaluation import evaluate
from hieramas.learner.dags import (
    DagBatch,
    chain_adjacency,
    edges_of,
    full_adjacency,
    longest_path,
)
from hieramas.stack import Stack
from hieramas.tasks import baselines
from hieramas.tasks.datasets import Item


def _run(
    stack: Stack, doc: dict[str, Any], items: list[Item], label: str, concurrency: int
) -> dict[str, Any]:
    assert stack.bus is not None
    client = HieraClient(stack.bus)
    stack.bus.call(client.apply_config(baselines.to_yaml(doc), source="bench"), 30)
    report = stack.bus.call(
        evaluate(client, items, method=label, concurrency=concurrency, timeout_s=300), None
    )
    return report.summary()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mmlu", choices=sorted(DATASETS))
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--dags", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="split, mixture and DAG seed")
    ap.add_argument("--latency-scale", type=float, default=0.02)
    ap.add_argument("--noise-seeds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--models", default="", help="comma-separated pool (default: all emulated)")
    args = ap.parse_args()

    items, label = load_items(args.dataset, "test", args.items, args.seed, None)
    domain = DATASETS[args.dataset][1]
    base = baselines.build(
        "hieramas-full",
        baselines.emulated_pool([m for m in args.models.split(",") if m] or None),
        domain,
        baselines.Options(seed=args.seed),
    )
    nodes = list(base["supernodes"])
    n = len(nodes)
    randoms = DagBatch.generate(nodes, args.dags, seed=args.seed)
    dags: dict[str, np.ndarray] = {
        "full": full_adjacency(n),
        "chain": chain_adjacency(n),
        "none": np.zeros((n, n), dtype=bool),
    }
    dags.update({f"random{i}": randoms.adjacency[i] for i in range(len(randoms))})

    def doc_for(adj: np.ndarray) -> dict[str, Any]:
        return {**base, "edges": [list(e) for e in edges_of(adj, nodes)]}

    print(
        f"{len(items)} items of {label}; {n} supernodes; EMULATED (latency x{args.latency_scale})"
    )
    rows: list[tuple[str, int, int, dict[str, Any]]] = []
    noise: dict[str, list[float]] = {"full": [], "random0": []}
    for emu_seed in range(args.noise_seeds + 1):
        with Stack(
            emulator=True, emulator_seed=emu_seed, emulator_latency_scale=args.latency_scale
        ) as stack:
            chosen = dags if emu_seed == 0 else {k: dags[k] for k in noise if k in dags}
            for name, adj in chosen.items():
                s = _run(stack, doc_for(adj), items, name, args.concurrency)
                if name in noise:
                    noise[name].append(s["accuracy"])
                if emu_seed == 0:
                    rows.append((name, int(adj.sum()), int(longest_path(adj)), s))
                print(
                    f"  seed {emu_seed} {name:9s} edges {int(adj.sum()):2d} "
                    f"depth {int(longest_path(adj))}: acc {s['accuracy']:.3f} "
                    f"cost ${s['cost_per_query_usd']:.4f} tok {s['tokens_per_query']:.0f} "
                    f"p50 {s['latency_p50_s']:.2f}s p95 {s['latency_p95_s']:.2f}s "
                    f"err {s['errors']}",
                    flush=True,
                )
    print("\n| DAG | edges | depth | accuracy | cost $/query | tokens/query | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, edges, depth, s in rows:
        print(
            f"| {name} | {edges} | {depth} | {s['accuracy']:.3f} | {s['cost_per_query_usd']:.4f} "
            f"| {s['tokens_per_query']:.0f} | {s['latency_p50_s']:.2f} | {s['latency_p95_s']:.2f} |"
        )
    acc = [s["accuracy"] for _, _, _, s in rows]
    rand = [s["accuracy"] for name, _, _, s in rows if name.startswith("random")]
    print(
        f"\naccuracy over all {len(acc)} DAGs: {min(acc):.3f}-{max(acc):.3f}, "
        f"sd {statistics.pstdev(acc):.3f}; over the random DAGs sd "
        f"{statistics.pstdev(rand) if rand else 0:.3f}"
    )
    for name, values in noise.items():
        if len(values) > 1:
            print(
                f"noise, {name} under {len(values)} emulator seeds: "
                f"{', '.join(f'{v:.3f}' for v in values)}; sd {statistics.pstdev(values):.3f}"
            )
    for key in ("cost_per_query_usd", "latency_p50_s"):
        vals = [s[key] for _, _, _, s in rows]
        print(f"{key}: {min(vals):.4g}-{max(vals):.4g} (max/min {max(vals) / min(vals):.2f})")
    edges_v = np.array([e for _, e, _, _ in rows], dtype=float)
    depth_v = np.array([d for _, _, d, _ in rows], dtype=float)
    cost_v = np.array([s["cost_per_query_usd"] for _, _, _, s in rows])
    lat_v = np.array([s["latency_p50_s"] for _, _, _, s in rows])
    print(
        f"correlation: cost~edges {np.corrcoef(edges_v, cost_v)[0, 1]:.2f}, "
        f"p50 latency~depth {np.corrcoef(depth_v, lat_v)[0, 1]:.2f}"
    )
    print("EMULATED: these figures describe the emulator, not real models.")


if __name__ == "__main__":
    main()
