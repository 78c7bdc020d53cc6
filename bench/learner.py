"""Learner service speed: trace events consumed and reflected, publish-to-plan latency,
planning time, training queries per second.

Four measurements (each a sub-command; ``all`` runs them in turn):

``consume``
    A real nats-server; the default MMLU training config (8 supernodes, 24 slots) in
    its config store; ``--queries`` synthetic but valid queries published into the
    trace stream through :class:`hieramas.traces.TraceEmitter` (as the runtime's
    processes do: batches by event kind), each with its ``query`` event (a sampled
    plan of policy version 1 naming a real MMLU-Redux item), 8 ``supernode``, 25
    ``llm_call`` and one ``decision`` event: 35 events per query.  Then a real
    ``hieramas learner`` process (``--embedder hash-32``, batch 16, ``--max-lag`` high
    so every episode trains) is started and timed from the moment it consumes
    (phase ``running``) until its durable state covers the stream's last sequence
    and every query is reflected (assembled, graded, trained on, saved, acknowledged).
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
from hieramas.controller.config import HieraConfig, parse_config
from hieramas.controller.store import ConfigStore
from hieramas.learner.process import LearnerProcess
from hieramas.learner.slots import SlotLayout
from hieramas.learner.trainconfig import to_yaml, training_config
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.tasks.datasets import load
from hieramas.traces import TraceEmitter, ensure_trace_stream
from hieramas.wire import Subjects, new_id
from hieramas.wire.events import (
    AssignmentRecord,
    DecisionRun,
    Event,
    LlmCall,
    NodeModels,
    QueryDone,
    SupernodeRun,
)

HERE = Path(__file__).resolve().parent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- consume -----------------------------------------------------------------------------


def synthetic_query(config: HieraConfig, item: Any, version: int, n_slots: int) -> list[Event]:
    """The trace events of one sampled query of ``config`` on ``item`` (35 for MMLU)."""
    qid, tid = new_id(), new_id()
    now = time.time()
    llms = list(config.llms)
    events: list[Event] = []
    proposers: dict[str, list[str]] = {}
    synths: dict[str, str] = {}
    for i, (name, spec) in enumerate(config.supernodes.items()):
        props = [llms[(i + j) % len(llms)] for j in range(len(spec.proposers))]
        synth = llms[(i + 3) % len(llms)]
        proposers[name], synths[name] = props, synth
        for slot, model in [*((f"p{j}", m) for j, m in enumerate(props)), ("synth", synth)]:
            events.append(
                LlmCall(
                    query_id=qid,
                    trace_id=tid,
                    span_id=new_id(),
                    config_version=1,
                    node=name,
                    role=spec.role,
                    slot=slot,
                    worker="w-bench",
                    model=model,
                    model_id=model,
                    endpoint="emulator",
                    started=now,
                    finished=now,
                    outcome="ok",
                    prompt_tokens=400,
                    completion_tokens=200,
                    cost_usd=0.0001,
                )
            )
        answer = item.answer if i % 3 else "ABCD".replace(item.answer, "")[0]
        events.append(
            SupernodeRun(
                query_id=qid,
                trace_id=tid,
                span_id=new_id(),
                config_version=1,
                node=name,
                role=spec.role,
                status="ok",
                answer=answer,
                models=NodeModels(proposers=list(props), synthesizer=synth),
                proposals_used=len(props),
                finished=now,
                cost_usd=0.0003,
            )
        )
    events.append(
        LlmCall(
            query_id=qid,
            trace_id=tid,
            span_id=new_id(),
            config_version=1,
            node="decision",
            role="decision",
            slot="decision",
            worker="w-bench",
            model=config.decision,
            model_id=config.decision,
            endpoint="emulator",
            started=now,
            finished=now,
            outcome="ok",
            prompt_tokens=900,
            completion_tokens=100,
            cost_usd=0.0004,
        )
    )
    events.append(
        DecisionRun(
            query_id=qid,
            trace_id=tid,
            span_id=new_id(),
            config_version=1,
            status="ok",
            answer=item.answer,
            decided_by="llm",
            model=config.decision,
            finished=now,
        )
    )
    events.append(
        QueryDone(
            query_id=qid,
            trace_id=tid,
            span_id=new_id(),
            config_version=1,
            status="ok",
            answer=item.answer,
            text=f"The answer is ({item.answer}).",
            domain="mmlu",
            item_id=item.id,
            emulated=True,
            cost_usd=0.0003 * len(config.supernodes) + 0.0004,
            planner="learned",
            policy_version=version,
            sampled=True,
            assignment=AssignmentRecord(
                proposers=proposers, synthesizers=synths, decision=config.decision
            ),
            edges=list(config.edges),
            task_text=item.question,
            temperature=1.0,
            log_probs=[-2.4] * n_slots,
        )
    )
    return events


async def _publish_backlog(bus: Bus, config_text: str, n_queries: int) -> tuple[int, int]:
    subjects = Subjects()
    await ensure_trace_stream(bus, subjects)
    store = await ConfigStore(bus).open()
    await store.apply(config_text, source="bench")
    config = parse_config(config_text)
    layout = SlotLayout.from_config(config)
    items = load("mmlu_redux")
    emitter = TraceEmitter(bus, subjects)
    emitter.start()
    events = 0
    for i in range(n_queries):
        for event in synthetic_query(config, items[i % len(items)], 1, len(layout.slots)):
            emitter.emit(event)
            events += 1
        if i % 100 == 99:
            await emitter.flush(60)
    await emitter.flush(60)
    info = await bus.js.stream_info("HIERAMAS_TRACES")
    return events, int(info.state.last_seq)


def bench_consume(n_queries: int, batch: int) -> dict[str, Any]:
    config_text = to_yaml(training_config("mmlu", embedder="hash-32"))
    with NatsServer() as server, tempfile.TemporaryDirectory() as tmp:
        bus = Bus(NatsSettings.from_env(server.url, name="bench-learner")).start()
        try:
            t0 = time.monotonic()
            events, last_seq = bus.call(_publish_backlog(bus, config_text, n_queries), 600)
            publish_s = time.monotonic() - t0
            learner = LearnerProcess(
                server.url,
                Path(tmp) / "learner",
                ["--embedder", "hash-32", "--batch", str(batch), "--max-lag", "1000000"],
                log_level="warning",
            )
            learner.start(wait="running", timeout=120)
            started = time.monotonic()
            try:
                status = learner.wait_for(
                    lambda s: (
                        s.get("stream_seq", 0) >= last_seq
                        and s.get("queries_done", 0) >= n_queries
                        and s.get("buffered", 1) < batch
                    ),
                    timeout=1800,
                    poll_s=0.02,
                )
                elapsed = time.monotonic() - started
            finally:
                learner.stop()
        finally:
            bus.stop()
    counters = status.get("counters", {})
    return {
        "queries": n_queries,
        "events": events,
        "messages": last_seq,
        "publish_s": publish_s,
        "reflect_s": elapsed,
        "events_per_s": events / elapsed,
        "queries_per_s": n_queries / elapsed,
        "updates": status.get("step"),
        "episodes_train": counters.get("episodes_train"),
        "rejected": {k: v for k, v in counters.items() if k.startswith("rejected")},
    }


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

    spec = importlib.util.spec_from_file_location("bench_embeddings", HERE / "embeddings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
        print("consume", json.dumps(bench_consume(args.queries or 2000, args.batch), indent=1))
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
