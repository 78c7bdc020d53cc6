"""End to end on real parts: nats-server, the emulator, a controller and worker, and a learner
process.  Training queries change the policy, and the controller plans the next queries with
the new version, live."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from learner_traces import mmlu_items, wait

from hieramas.controller.client import HieraClient
from hieramas.controller.config import PlannerConfig
from hieramas.learner.process import LearnerProcess
from hieramas.learner.store import PolicyStore
from hieramas.natsserver import NatsServer
from hieramas.stack import EmulatorProcess, Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone

TRAINING_QUERIES = 48


@pytest.mark.slow
def test_training_queries_change_the_policy_and_the_controller_plans_with_the_new_version(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = resources.files("hieramas").joinpath("configs/mmlu.yaml").read_text()
    items = mmlu_items(TRAINING_QUERIES + 1)
    emulator = EmulatorProcess(seed=0, latency_scale=0.0).start()
    learner = LearnerProcess(
        nats_server.url,
        tmp_path / "learner",
        ["--embedder", "hash-32", "--batch", "8", "--grace", "3"],
    )
    try:
        with Stack(
            nats_url=nats_server.url,
            emulator_url=emulator.url,
            planner=PlannerConfig(kind="learned"),
        ) as stack:
            assert stack.bus is not None
            client = HieraClient(stack.bus)
            stack.bus.call(client.apply_config(config), 30)
            root = int(learner.start(wait="running").wait_phase("running")["version"])

            def ask(item: Any, explore: bool) -> dict[str, Any]:
                assert stack.bus is not None
                return stack.bus.call(  # type: ignore[no-any-return]
                    client.ask(item.question, domain="mmlu", item_id=item.id, explore=explore), 60
                )

            wait(lambda: ask(items[0], False)["policy_version"] == root, what="the root version")

            async def train() -> list[dict[str, Any]]:
                gate = asyncio.Semaphore(8)

                async def one(item: Any) -> dict[str, Any]:
                    async with gate:
                        return await client.ask(
                            item.question, domain="mmlu", item_id=item.id, explore=True
                        )

                return await asyncio.gather(*(one(item) for item in items[:TRAINING_QUERIES]))

            trained = stack.bus.call(train(), 120)
            learner.wait_for(lambda s: s["step"] >= TRAINING_QUERIES // 8 - 1, 60)
            newest = int(learner.wait_for(lambda s: s["version"] > root, 10)["version"])
            after: dict[str, Any] = {}

            def planned_with_newest() -> bool:
                after.update(ask(items[-1], False))
                return int(after["policy_version"] or 0) >= newest

            wait(planned_with_newest, timeout=10, what="a query planned with the new version")
            assert stack.controller is not None
            stack.bus.call(stack.controller.traces.flush(), 10)
            events = stack.bus.call(replay(stack.bus, Subjects()), 30)

            async def records() -> tuple[Any, Any]:
                store = await PolicyStore(stack.bus).open()  # type: ignore[arg-type]
                return await store.record(root), await store.record(newest)

            first, last = stack.bus.call(records(), 30)
    finally:
        learner.stop()
        emulator.stop()

    assert all(r["status"] == "ok" and r["sampled"] for r in trained)
    assert {r["policy_version"] for r in trained} >= {root}
    traced = {e.query_id: e for e in events if isinstance(e, QueryDone)}
    assert traced[after["query_id"]].policy_version == after["policy_version"] >= newest
    assert not traced[after["query_id"]].sampled  # a normal query: greedy
    assert last.sha256 != first.sha256 and last.lineage == first.lineage  # the policy changed
    assert last.meta["step"] >= 1 and last.metrics["used"] == 8.0
    metrics = learner.metrics()
    assert sum(m["used"] for m in metrics) >= 8 * (TRAINING_QUERIES // 8 - 1)
