"""A learner killed with SIGKILL mid-training, again and again, resumes from its last saved
state and consumer position: every query in the stream is reflected exactly once, checked
against the stream's own sequence numbers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from learner_traces import apply, config_yaml, mmlu_items, publish, query_events, run

from hieramas.bus import Bus
from hieramas.learner.process import LearnerProcess
from hieramas.learner.rundir import EPISODES_LOG, METRICS_LOG, RunDir
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import TRACE_STREAM
from hieramas.wire.events import Event, QueryDone

QUERIES = 160
OPTIONS = ["--embedder", "hash-32", "--batch", "4", "--grace", "2", "--max-lag", "1000"]


@pytest.mark.slow
def test_sigkill_mid_training_loses_nothing_and_counts_nothing_twice(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    learner = LearnerProcess(nats_server.url, tmp_path / "run", OPTIONS)
    try:
        run(bus, apply(bus, config_yaml()))
        status = learner.start(wait="running").wait_phase("running")
        root = int(status["version"])
        items = mmlu_items(QUERIES)
        rng = random.Random(5)
        events: list[Event] = []
        for start in range(0, QUERIES, 8):  # events of 8 queries at a time, shuffled together
            window: list[Event] = []
            for i, item in enumerate(items[start : start + 8], start):
                right = (i % 3 != 0, i % 2 == 0)
                window += query_events(item, policy_version=root, nodes_right=right)
            rng.shuffle(window)
            events += window
        published: list[int] = []

        def producer() -> None:
            for chunk in range(0, len(events), 24):
                published.extend(run(bus, publish(bus, events[chunk : chunk + 24]), 60))
                time.sleep(0.05)

        feeding = threading.Thread(target=producer)
        feeding.start()
        kills = 0
        for _ in range(3):  # kill it while it reads and trains, restart it at once
            seen = learner.wait_for(lambda s: s["step"] >= 1 and s["stream_seq"] > 0, 60)["step"]
            learner.wait_for(lambda s, seen=seen: s["step"] > seen, 60)  # type: ignore[misc]
            time.sleep(rng.uniform(0.0, 0.3))
            learner.kill()
            kills += 1
            learner.start(wait="running")
        feeding.join(120)
        last = published[-1]
        final = learner.wait_for(
            lambda s: (
                s["stream_seq"] == last
                and s["queries_done"] == QUERIES
                and not s["pending"]
                and s["buffered"] < 4
            ),  # every full batch trained
            120,
        )
        learner.stop()  # SIGTERM: a last save and acknowledgement
        info = run(bus, bus.js.consumer_info(TRACE_STREAM, "hieramas-learner"))
    finally:
        learner.stop()
        bus.stop()

    run_dir = RunDir(tmp_path / "run")
    query_seqs = {
        seq: e.query_id
        for seq, e in zip(published, events, strict=True)
        if isinstance(e, QueryDone)
    }
    rows = run_dir.read_log(EPISODES_LOG)
    assert kills == 3 and final["counters"]["restarts"] == 3
    # every query event of the stream became exactly one episode, from its own message
    assert Counter(r["seq"] for r in rows) == Counter(list(query_seqs))
    assert {r["seq"]: r["query_id"] for r in rows} == query_seqs
    counters = final["counters"]
    assert counters["episodes"] == QUERIES == counters["assembled"]
    assert counters.get("duplicate_query", 0) == 0 and counters.get("late_event", 0) == 0
    assert counters.get("completed_by_grace", 0) == 0  # no node event was lost either
    assert final["events_read"] == len(events) and final["bad_events"] == 0
    # the updates form one chain: steps 1..K, each trained once, each published once
    metrics = run_dir.read_log(METRICS_LOG)
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    assert sum(m["used"] for m in metrics) == counters["episodes_train"] - final["buffered"]
    assert [m["parent"] for m in metrics] == [root] + [m["version"] for m in metrics[:-1]]
    assert info.ack_floor.stream_seq == last and info.num_ack_pending == 0
