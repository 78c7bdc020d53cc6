"""Learner service speed: trace events consumed and reflected, publish-to-plan latency,
planning time, training queries per second.

Four measurements (each a sub-command; ``all`` runs them in turn):

``consume``
    Trace events consumed and reflected per second, end to end from JetStream: runs
    ``bench/learner_service.py throughput --sampled`` (a backlog of synthetic, valid
    MMLU queries in a real nats-server's trace stream, a real learner process timed
    until every message is read, assembled, graded, trained on, saved and
    acknowledged).  ``bench/learner_service.py latency`` measures the provider side
    of a publish at 1 ms resolution; ``publish`` below measures it through the gateway.
``publish``
    An embedded stack (controller with the learned planner, worker, the emulator at
    latency 0) and a loop of one-at-a-time queries on a one-node config; a new policy
    version is published to the policy store (:class:`PolicyStore.publish`) and the
    time from the end of that publish to the *sending* of the first query planned
    with it is taken (queries take a few ms, which bounds the resolution).
``planning``
    :func:`bench/embeddings.py <bench_planning>`: one query planned warm and cold.
``train``
    ``hieramas train`` in-process on the embedded stack (MMLU default config, the
    emulator at latency 0, a real learner process): training queries per second over
    the iterations, with and without the time spent waiting for the learner's update.

    .venv/bin/python bench/learner.py consume [--queries 2000]
    .venv/bin/python bench/learner.py publish [--trials 20]
    .venv/bin/python bench/learner.py planning [--n 200]
    .venv/bin/python bench/learner.py train [--queries 256] [--embedder all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hieramas.bus import Bus
from hieramas.controller.config import parse_config
from hieramas.learner.trainconfig import to_yaml, training_config
from hieramas.natsserver import NatsServer

HERE = Path(__file__).resolve().parent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _sibling(name: str) -> Any:
    """Another script of bench/ as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- consume (bench/learner_service.py) -------------------------------------------------------


def bench_consume(n_queries: int, batch: int, embedder: str) -> None:
    """Events reflected per second: ``bench/learner_service.py throughput --sampled``."""
    service = _sibling("learner_service")
    args = argparse.Namespace(
        queries=n_queries, sampled=True, embedder=embedder, batch=batch, per_message=256
    )
    service.throughput(args)


# -- publish -> first plan ------------------------------------------------------------------


async def _publish_trials(bus: Bus, trials: int, config_text: str) -> list[dict[str, float]]:
    from hieramas.controller.client import HieraClient
    from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
    from hieramas.learner.embedder_names import embedder_for
    from hieramas.learner.policy import Policy
    from hieramas.learner.store import PolicyStore

    client = HieraClient(bus, sender="bench")
    version_cfg = await client.apply_config(config_text, source="bench")
    config = parse_config(config_text)
    embedder = embedder_for("hash-32")
    store = await PolicyStore(bus).open()

    def encoder(seed: int) -> Any:
        policy = Policy.create(config, embedder, seed=seed)

        def encode(version: int) -> tuple[bytes, dict[str, Any]]:
            meta = CheckpointMeta(
                version=version, parent=None, config_name=config.name,
                config_version=version_cfg, layout=policy.layout.to_json(),
                embedder=embedder.name, dim=policy.net.dim, hidden=policy.net.hidden, seed=seed,
            )  # fmt: skip
            return encode_checkpoint(policy, meta), {"lineage": "bench"}

        return encode

    async def ask() -> tuple[float, Any]:
        sent = time.monotonic()
        result = await client.ask("What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6", domain="mmlu")
        return sent, result.get("policy_version")

    await store.publish(encoder(0))
    for _ in range(200):  # the planner starts at the first query and loads the version
        if (await ask())[1] is not None:
            break
        await asyncio.sleep(0.01)
    out = []
    for trial in range(trials):
        encode = encoder(trial + 1)
        t_start = time.monotonic()
        record = await store.publish(encode)
        t_done = time.monotonic()
        while True:
            sent, version = await ask()
            if version == record.version:
                break
            if time.monotonic() - t_done > 10:
                raise RuntimeError(f"version {record.version} not used within 10 s")
        out.append(
            {
                "publish_ms": (t_done - t_start) * 1e3,
                "to_first_plan_ms": max(0.0, sent - t_done) * 1e3,
            }
        )
        await asyncio.sleep(0.05)
    return out


def bench_publish(trials: int) -> dict[str, Any]:
    from hieramas.stack import EmulatorProcess, Stack

    doc = training_config("mmlu", roles=1, embedder="hash-32")
    for spec in doc["supernodes"].values():
        spec["proposers"] = spec["proposers"][:1]
    config_text = to_yaml(doc)
    emulator = EmulatorProcess().start()
    try:
        with NatsServer() as server, Stack(nats_url=server.url, emulator_url=emulator.url) as st:
            assert st.bus is not None
            rows = st.bus.call(_publish_trials(st.bus, trials, config_text), 600)
    finally:
        emulator.stop()
    first = [r["to_first_plan_ms"] for r in rows]
    pub = [r["publish_ms"] for r in rows]
    return {
        "trials": trials,
        "to_first_plan_ms": {"p50": _pct(first, 0.5), "p90": _pct(first, 0.9), "max": max(first)},
        "publish_ms": {"p50": _pct(pub, 0.5), "max": max(pub)},
    }


# -- planning (bench/embeddings.py) ------------------------------------------------------------


def bench_planning_times(n: int) -> None:
    import torch

    module = _sibling("embeddings")
    from hieramas.learner.embeddings import SentenceEmbedder

    torch.set_num_threads(1)
    texts = module._texts(64)
    for int8 in (False, True):
        print(f"torch threads = 1, MiniLM {'int8' if int8 else 'float32'}")
        module.bench_planning(SentenceEmbedder(int8=int8), texts, n)


# -- training queries per second ---------------------------------------------------------------


def bench_train(queries: int, embedder: str, batch: int) -> dict[str, Any]:
    from hieramas.learner.driver import METRICS, TrainOptions
    from hieramas.learner.trainrun import run_training

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        options = TrainOptions(
            dataset="mmlu", run_dir=run_dir, queries=queries, batch=batch, eval_every=0,
            eval_items=16, embedder=embedder,
        )  # fmt: skip
        started = time.monotonic()
        run_training(options)
        total = time.monotonic() - started
        rows = [json.loads(x) for x in (run_dir / METRICS).read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"][1:]  # the first waits for the planner
    n = sum(r["n"] for r in train)
    wall = sum(r["wall_s"] for r in train)
    wait = sum(r["learner_wait_s"] for r in train)
    return {
        "queries": queries,
        "embedder": embedder,
        "batch": batch,
        "total_wall_s": total,
        "queries_per_s": n / wall,
        "queries_per_s_without_learner_wait": n / (wall - wait),
        "learner_wait_s_per_iteration": {
            "p50": _pct([r["learner_wait_s"] for r in train], 0.5),
            "max": max(r["learner_wait_s"] for r in train),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["consume", "publish", "planning", "train", "all"])
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores shared)", file=sys.stderr)
    if args.what in ("consume", "all"):
        bench_consume(args.queries or 2000, args.batch, "hash-32")
    if args.what in ("publish", "all"):
        print("publish", json.dumps(bench_publish(args.trials), indent=1))
    if args.what in ("planning", "all"):
        bench_planning_times(args.n)
    if args.what in ("train", "all"):
        result = bench_train(args.queries or 256, args.embedder, args.batch)
        print("train", json.dumps(result, indent=1))
    print(f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
