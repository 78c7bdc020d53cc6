"""The learner service's seams: trace events consumed and reflected per second, and the time
from a policy publish to the first query planned with it.

``throughput``: fills a fresh trace stream with the events of N synthetic queries of
``hieramas/configs/mmlu.yaml`` (8 supernodes, MMLU-Redux train items; per query 8
``supernode``, 28 ``llm_call``, 1 ``decision`` and 1 ``query`` event, batched by kind
as the emitters batch them), then starts a learner process on it and times it from
the moment it runs (consumer open) until every message is reflected (read, assembled,
graded, trained on if sampled, saved and acknowledged).  ``--sampled`` makes every
query a training episode of the learner's root version (then updates of ``--batch``
run too); ``--embedder`` picks the learner's embedder.  ``--carry`` gives each sampled
query event the query embedding its planner made (``query_embedding``, float16, by the
same embedder, computed before the clock starts: the controller pays for it when it
plans), so the learner trains on it instead of embedding the text again.

``latency``: a provider (as the controller runs it) follows the policy store on one
NATS connection; a publisher on another publishes MMLU-config policies (MiniLM-sized
unless ``--embedder``); a planning thread asks the provider's current policy every
millisecond, as the gateway's planning threads do per query.  Prints, per publish,
the publish call's duration and the time from its return to the first plan made with
the new version.

    .venv/bin/python bench/learner_service.py throughput [--queries 2000] [--sampled]
    .venv/bin/python bench/learner_service.py latency [--n 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from hieramas.bus import Bus
from hieramas.controller.config import parse_config
from hieramas.controller.planner import PlanRequest
from hieramas.controller.store import ConfigStore
from hieramas.learner.process import LearnerProcess
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.tasks import datasets
from hieramas.traces import ensure_trace_stream
from hieramas.wire import Envelope, Kind, Subjects
from hieramas.wire.events import (
    AssignmentRecord,
    DecisionRun,
    Event,
    LlmCall,
    NodeModels,
    QueryDone,
    SupernodeRun,
)

CONFIG = resources.files("hieramas").joinpath("configs/mmlu.yaml").read_text()


def _query(
    item: Any,
    cfg: Any,
    version: int,
    sampled: bool,
    rng: random.Random,
    carried: tuple[bytes, str] | None = None,
) -> list[Event]:
    qid = f"{rng.getrandbits(64):016x}"
    events: list[Event] = []
    for name, spec in cfg.supernodes.items():
        for i, llm in enumerate([*spec.proposers, spec.synthesizer]):
            slot = "synth" if i == len(spec.proposers) else f"p{i}"
            events.append(
                LlmCall(
                    query_id=qid,
                    config_version=1,
                    node=name,
                    role=spec.role,
                    slot=slot,
                    worker="w",
                    model=llm,
                    model_id=llm,
                    endpoint="emulator",
                    started=0.0,
                    finished=0.1,
                    outcome="ok",
                    prompt_tokens=300,
                    completion_tokens=80,
                    cost_usd=0.0001,
                )
            )
        answer = item.answer if rng.random() < 0.8 else "A"
        events.append(
            SupernodeRun(
                query_id=qid,
                config_version=1,
                node=name,
                role=spec.role,
                status="ok",
                answer=answer,
                models=NodeModels(list(spec.proposers), spec.synthesizer),
                cost_usd=0.0003,
            )
        )
    events.append(
        DecisionRun(
            query_id=qid, config_version=1, status="ok", answer=item.answer, decided_by="llm"
        )
    )
    slots = sum(len(s.proposers) + 1 for s in cfg.supernodes.values())
    events.append(
        QueryDone(
            query_id=qid,
            config_version=1,
            status="ok",
            answer=item.answer,
            text=f"The answer is ({item.answer}).",
            domain="mmlu",
            item_id=item.id,
            cost_usd=0.0027,
            planner="learned",
            policy_version=version,
            sampled=sampled,
            assignment=AssignmentRecord(
                proposers={n: list(s.proposers) for n, s in cfg.supernodes.items()},
                synthesizers={n: s.synthesizer for n, s in cfg.supernodes.items()},
                decision=cfg.decision,
            ),
            task_text=item.question,
            temperature=2.0 if sampled else None,
            log_probs=[-1.0] * slots if sampled else None,
            query_embedding=carried[0] if carried else None,
            embedder=carried[1] if carried else None,
        )
    )
    return events


def _carried(texts: list[str], embedder_name: str) -> list[tuple[bytes, str]]:
    """What the planner would attach to each sampled query: its embedding and embedder."""
    from hieramas.learner.embedder_names import embedder_for
    from hieramas.learner.planning import pack_embedding

    embedder = embedder_for(embedder_name)
    vectors = embedder.embed(texts).numpy()
    return [(pack_embedding(v) or b"", embedder.name) for v in vectors]


async def _fill(bus: Bus, events: list[Event], per_message: int) -> int:
    subjects = Subjects()
    await ensure_trace_stream(bus, subjects)
    by_kind: dict[str, list[Event]] = {}
    last = 0
    for event in events:
        batch = by_kind.setdefault(event.event, [])
        batch.append(event)
        if len(batch) >= per_message:
            last = await _send(bus, subjects, event.event, batch)
            by_kind[event.event] = []
    for kind, batch in by_kind.items():
        if batch:
            last = await _send(bus, subjects, kind, batch)
    await bus.js.publish_async_completed()
    return last


async def _send(bus: Bus, subjects: Subjects, kind: str, batch: list[Event]) -> int:
    envelope = Envelope(kind=Kind.TRACE, payload={"events": batch}, sender="bench")
    ack = await bus.js.publish(subjects.trace(kind), bus.encode(envelope))
    return int(ack.seq)


def throughput(args: argparse.Namespace) -> None:
    cfg = parse_config(CONFIG)
    items = list(datasets.split(datasets.load("mmlu_redux"), seed=0).train)
    rng = random.Random(0)
    with NatsServer() as server, tempfile.TemporaryDirectory() as tmp:
        bus = Bus(NatsSettings(url=server.url)).start()
        try:
            bus.call(_apply(bus), 30)
            options = [
                "--embedder",
                args.embedder,
                "--batch",
                str(args.batch),
                "--max-lag",
                "100000",
            ]
            learner = LearnerProcess(server.url, Path(tmp) / "run", options, log_level="warning")
            root = int(learner.start(wait="running").wait_phase("running", 300)["version"])
            learner.stop()  # stopped while the stream fills: then timed on a backlog
            asked = [items[i % len(items)] for i in range(args.queries)]
            carried = (
                _carried([item.question for item in asked], args.embedder)
                if args.carry and args.sampled
                else [None] * len(asked)
            )
            events: list[Event] = []
            for item, carry in zip(asked, carried, strict=True):
                events += _query(item, cfg, root, args.sampled, rng, carry)
            window = 8 * 38  # interleave the events of 8 queries, as concurrent queries do
            for start in range(0, len(events), window):
                chunk = events[start : start + window]
                rng.shuffle(chunk)
                events[start : start + window] = chunk
            last = bus.call(_fill(bus, events, args.per_message), 600)
            learner.start(wait="running")
            began = time.monotonic()
            status = learner.wait_for(
                lambda s: s["stream_seq"] >= last and s["queries_done"] >= args.queries
                and s["buffered"] < args.batch,
                timeout=3600,
                poll_s=0.02,
            )  # fmt: skip
            elapsed = time.monotonic() - began
            learner.stop()
        finally:
            bus.stop()
    n = len(events)
    print(
        f"{args.queries} queries, {n} events in {last} messages; sampled={args.sampled} "
        f"carry={args.carry} embedder={args.embedder} batch={args.batch}: "
        f"{elapsed:.2f} s from consumer open to "
        f"all reflected: {n / elapsed:,.0f} events/s, {args.queries / elapsed:,.0f} queries/s; "
        f"updates {status['step']}, saves {status['counters'].get('saves')}; "
        f"seconds by phase {status['seconds']}; query embeddings carried "
        f"{status['counters'].get('embeddings_carried', 0)}, embedded "
        f"{status['counters'].get('embeddings_computed', 0)}"
    )


async def _apply(bus: Bus) -> None:
    store = await ConfigStore(bus).open()
    await store.apply(CONFIG, source="bench")


def latency(args: argparse.Namespace) -> None:
    from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
    from hieramas.learner.embedder_names import embedder_for
    from hieramas.learner.policy import Policy
    from hieramas.learner.provider import NatsPolicyProvider
    from hieramas.learner.store import PolicyStore
    from hieramas.learner.threads import set_torch_threads

    set_torch_threads(1)
    cfg = parse_config(CONFIG)
    embedder = embedder_for(args.embedder)
    policy = Policy.create(cfg, embedder, seed=0)
    request = PlanRequest(task_text="Which of these is a prime number? (A) 4 (B) 6 (C) 7 (D) 9")
    with NatsServer() as server:
        planner_bus = Bus(NatsSettings(url=server.url)).start()
        learner_bus = Bus(NatsSettings(url=server.url)).start()
        provider = NatsPolicyProvider(embedder=args.embedder)
        first_plan: dict[int, float] = {}
        stop = threading.Event()

        def plan_loop() -> None:  # what the gateway's planner threads do, once per query
            while not stop.is_set():
                current = provider.current()
                if current is not None:
                    current.assign(cfg, request)
                    first_plan.setdefault(current.version, time.perf_counter())
                time.sleep(0.001)

        try:
            planner_bus.call(provider.start(planner_bus), 120)
            store = learner_bus.call(PolicyStore(learner_bus).open(), 30)
            planning = threading.Thread(target=plan_loop, daemon=True)
            planning.start()
            publish_s, to_plan_s, size = [], [], 0
            for i in range(args.n + 1):

                def encode(version: int) -> tuple[bytes, dict[str, Any]]:
                    meta = CheckpointMeta(
                        version=version, parent=None, config_name=cfg.name, config_version=1,
                        layout=policy.layout.to_json(), embedder=embedder.name, dim=embedder.dim,
                        hidden=policy.net.hidden, seed=0,
                    )  # fmt: skip
                    return encode_checkpoint(policy, meta), {"lineage": "bench"}

                t0 = time.perf_counter()
                record = learner_bus.call(store.publish(encode), 30)
                t1 = time.perf_counter()
                while record.version not in first_plan:
                    time.sleep(0.0005)
                if i:  # the first load also builds the embedder: not a steady-state figure
                    publish_s.append(t1 - t0)
                    to_plan_s.append(first_plan[record.version] - t1)
                size = record.size
                time.sleep(0.2)
        finally:
            stop.set()
            planner_bus.call(provider.stop(), 10)
            planner_bus.stop()
            learner_bus.stop()
    ms = lambda xs: f"p50 {statistics.median(xs) * 1e3:.1f} ms, max {max(xs) * 1e3:.1f} ms"  # noqa: E731
    print(f"policy blob {size / 1e6:.2f} MB ({args.embedder}); {args.n} publishes")
    print(f"publish call (claim number, put blob, move current): {ms(publish_s)}")
    print(f"publish returned -> first plan with the new version: {ms(to_plan_s)}")
    total = [a + b for a, b in zip(publish_s, to_plan_s, strict=True)]
    print(f"publish called -> first plan with it: {ms(total)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--queries", type=int, default=2000)
    tp.add_argument("--sampled", action="store_true")
    tp.add_argument("--carry", action="store_true", help="events carry the query embedding")
    tp.add_argument("--embedder", default="hash-32")
    tp.add_argument("--batch", type=int, default=16)
    tp.add_argument("--per-message", type=int, default=256)
    lt = sub.add_parser("latency")
    lt.add_argument("--n", type=int, default=20)
    lt.add_argument("--embedder", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    (throughput if args.what == "throughput" else latency)(args)


if __name__ == "__main__":
    main()
