"""Synthetic trace events of a small MMLU config, published into a real trace stream, and a
learner service run in this process: for the learner-service tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from hieramas.bus import Bus
from hieramas.controller.store import ConfigStore
from hieramas.learner.service import LearnerOptions, LearnerService
from hieramas.tasks import datasets
from hieramas.tasks.datasets import Item
from hieramas.traces import ensure_trace_stream
from hieramas.wire import Envelope, Kind, Subjects
from hieramas.wire.events import AssignmentRecord, Event, NodeModels, QueryDone, SupernodeRun

NODES = {"a": ("Critic", 2), "b": ("Doctor", 1)}
LLMS = {"cheap": 0.1, "dear": 5.0}


def config_yaml(nodes: dict[str, tuple[str, int]] = NODES, name: str = "toy-mmlu") -> str:
    """A small MMLU config on the emulator (never run here: traces are synthetic)."""
    return yaml.safe_dump(
        {
            "name": name,
            "domain": "mmlu",
            "endpoints": {"emu": {"kind": "emulator"}},
            "llms": {
                n: {"endpoint": "emu", "price_in": p, "price_out": p} for n, p in LLMS.items()
            },
            "supernodes": {
                n: {"role": role, "proposers": ["cheap"] * k, "synthesizer": "cheap"}
                for n, (role, k) in nodes.items()
            },
            "edges": [],
            "decision": "cheap",
        },
        sort_keys=False,
    )


def mmlu_items(n: int) -> list[Item]:
    """``n`` MMLU-Redux training-split items."""
    return list(datasets.split(datasets.load("mmlu_redux"), seed=0).train[:n])


def wrong(item: Item) -> str:
    return "A" if item.answer != "A" else "B"


def query_events(
    item: Item | None,
    *,
    config_version: int = 1,
    policy_version: int | None = 1,
    nodes_right: Sequence[bool] = (True, True),
    final_right: bool = True,
    sampled: bool = True,
    item_id: str | None = None,
    query_id: str | None = None,
    layout_nodes: dict[str, tuple[str, int]] = NODES,
) -> list[Event]:
    """One query's ``supernode`` events and its ``query`` event (in that order)."""
    qid = query_id or uuid.uuid4().hex[:16]
    gold = item.answer if item is not None else "A"
    bad = wrong(item) if item is not None else "B"
    events: list[Event] = []
    for (node, (role, _)), right in zip(layout_nodes.items(), nodes_right, strict=True):
        events.append(
            SupernodeRun(
                query_id=qid,
                config_version=config_version,
                node=node,
                role=role,
                status="ok",
                answer=gold if right else bad,
                models=NodeModels(proposers=["cheap"] * layout_nodes[node][1], synthesizer="cheap"),
                cost_usd=0.001,
            )
        )
    slots = sum(k + 1 for _, k in layout_nodes.values())
    events.append(
        QueryDone(
            query_id=qid,
            config_version=config_version,
            status="ok",
            answer=gold if final_right else bad,
            text=f"The answer is ({gold if final_right else bad}).",
            domain="mmlu",
            item_id=item_id if item_id is not None else (item.id if item is not None else None),
            cost_usd=0.002 * len(layout_nodes),
            planner="learned",
            policy_version=policy_version,
            sampled=sampled,
            assignment=AssignmentRecord(
                proposers={n: ["cheap"] * k for n, (_, k) in layout_nodes.items()},
                synthesizers={n: "cheap" for n in layout_nodes},
                decision="cheap",
            ),
            task_text=item.question if item is not None else "What is the capital of France?",
            temperature=2.0 if sampled else None,
            log_probs=[-1.0] * slots if sampled else None,
        )
    )
    return events


async def publish(bus: Bus, events: Sequence[Event]) -> list[int]:
    """Each event in a trace message of its own; the stream sequences they got."""
    subjects = Subjects()
    await ensure_trace_stream(bus, subjects)
    seqs = []
    for event in events:
        envelope = Envelope(kind=Kind.TRACE, payload={"events": [event]}, sender="test")
        ack = await bus.js.publish(subjects.trace(event.event), bus.encode(envelope))
        seqs.append(int(ack.seq))
    return seqs


async def publish_raw(bus: Bus, kind: str, data: bytes) -> int:
    """Raw bytes on a trace subject (e.g. garbage)."""
    subjects = Subjects()
    await ensure_trace_stream(bus, subjects)
    return int((await bus.js.publish(subjects.trace(kind), data)).seq)


async def apply(bus: Bus, text: str) -> int:
    """Apply a config through the store (no controller needed)."""
    store = await ConfigStore(bus).open()
    return (await store.apply(text, source="test")).version


def wait(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running_learner(bus: Bus, run_dir: Path, **options: Any) -> Iterator[LearnerService]:
    """A learner service on ``bus`` in this process (hash embedder, small batches)."""
    opts = {"embedder": "hash-32", "batch": 4, "grace_s": 0.5, "save_every_s": 0.1, **options}
    service = LearnerService(bus, LearnerOptions(run_dir=run_dir, **opts))
    future: Future[None] = bus.run(service.run())
    try:
        yield service
    finally:
        service.request_stop()
        future.result(30)


def run(bus: Bus, coro: Any, timeout: float = 30.0) -> Any:
    return bus.call(coro, timeout)
