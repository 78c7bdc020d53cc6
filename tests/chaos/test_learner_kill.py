"""The learner on host 2 of the cluster, SIGKILLed mid-training twice while queries run and
training events stream in: it resumes from its saved state and consumer position on the R3
trace stream, and every training query is reflected exactly once, by stream sequence."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import pytest
import yaml
from chaos_support import ChaosFactory, assert_no_hang, on
from learner_traces import NODES, config_yaml, mmlu_items, publish, query_events

from hieramas.learner.rundir import EPISODES_LOG, METRICS_LOG, RunDir
from hieramas.loadgen import QueryLoad
from hieramas.wire.events import Event, QueryDone

QUERIES = 64
OPTIONS = ["--embedder", "hash-32", "--batch", "4", "--grace", "2", "--max-lag", "1000"]


def _config() -> str:
    """The learner tests' toy MMLU layout, its two LLMs served by emulated models."""
    data = yaml.safe_load(config_yaml())
    data["llms"]["cheap"]["model"] = "llama-8b"
    data["llms"]["dear"]["model"] = "qwen3-8b"
    data["limits"] = {"query_timeout_s": 20, "node_timeout_s": 20}
    return yaml.safe_dump(data, sort_keys=False)


def test_learner_killed_mid_training_resumes_losing_and_doubling_nothing(
    chaos: ChaosFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = chaos(learner=2, learner_options=OPTIONS)
    # the test publishes as admin: with the parts' replica count, or its first publish
    # would scale the R3 trace stream down to R1 under the running learner
    monkeypatch.setenv("HIERAMAS_JS_REPLICAS", c.cluster.env["HIERAMAS_JS_REPLICAS"])
    c.apply(_config())
    run_dir = RunDir(c.cluster.workdir / "learner")

    def status() -> dict[str, Any]:
        current = run_dir.read_status() or {}
        return current if current.get("pid") == c.cluster.parts["learner"].pid else {}

    def wait_for(predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = status()
            if current and predicate(current):
                return current
            time.sleep(0.1)
        raise AssertionError(f"the learner did not reach {what} within {timeout}s: {status()}")

    root = int(wait_for(lambda s: s.get("phase") == "running", 120, "running")["version"])
    rng = random.Random(7)
    events: list[Event] = []
    for start in range(0, QUERIES, 8):  # 8 queries' events at a time, interleaved
        window: list[Event] = []
        for i, item in enumerate(mmlu_items(QUERIES)[start : start + 8], start):
            window += query_events(item, policy_version=root, nodes_right=(i % 3 != 0, i % 2 == 0))
        rng.shuffle(window)
        events += window
    published: list[int] = []
    load = QueryLoad(c.buses["client"], clients=2, timeout_s=20.0)

    async def feed() -> None:
        for chunk in range(0, len(events), 24):
            published.extend(await publish(c.bus, events[chunk : chunk + 24]))
            await asyncio.sleep(0.3)

    async def traffic() -> None:
        feeding = asyncio.ensure_future(feed())
        await on(load.bus, load.run(duration_s=20.0))
        await feeding

    running = c.bus.run(traffic())
    kills = 0
    for _ in range(2):  # kill it while it reads and trains, start it again at once
        seen = wait_for(lambda s: s["step"] >= 1 and s["stream_seq"] > 0, 90, "a step")["step"]
        wait_for(lambda s, seen=seen: s["step"] > seen, 90, "the next step")
        time.sleep(rng.uniform(0.0, 0.3))
        c.cluster.kill("learner")
        kills += 1
        c.cluster.restart("learner", 120)
    running.result(120)
    last = published[-1]
    final = wait_for(
        # (a real query whose node events were lost with a killed learner may stay pending)
        lambda s: s["stream_seq"] >= last and s["counters"].get("episodes_train", 0) >= QUERIES,
        120,
        "the end of the stream",
    )
    assert_no_hang(load.outcomes, at_least=10)

    query_seqs = {
        seq: e.query_id
        for seq, e in zip(published, events, strict=True)
        if isinstance(e, QueryDone)
    }
    rows = [r for r in run_dir.read_log(EPISODES_LOG) if r["seq"] in query_seqs]
    counters = final["counters"]
    # (a state restore also follows a recovery inside the process, e.g. from a JetStream
    # "service unavailable" while the R3 stream's consumer moves)
    assert kills == 2 and counters["restarts"] >= 2
    # every training query of the stream became exactly one episode, from its own message
    assert Counter(r["seq"] for r in rows) == Counter(list(query_seqs))
    assert {r["seq"]: r["query_id"] for r in rows} == query_seqs
    assert counters.get("duplicate_query", 0) == 0
    metrics = run_dir.read_log(METRICS_LOG)  # one chain of updates, each published once
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    assert [m["parent"] for m in metrics] == [root] + [m["version"] for m in metrics[:-1]]
    print(
        f"learner kill x{kills}: {len(rows)} episodes for {len(query_seqs)} training queries, "
        f"{len(metrics)} updates; queries {dict(load.codes())}; layout {sorted(NODES)}"
    )
