"""The learner service on a real nats-server, fed synthetic traces: episodes, updates and
versions; bad input rejected, logged, counted, and the learner carries on; feedback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from learner_traces import (
    apply,
    config_yaml,
    mmlu_items,
    publish,
    publish_raw,
    query_events,
    run,
    running_learner,
    wait,
)
from structlog.testing import capture_logs

from hieramas.bus import Bus
from hieramas.learner.rundir import EPISODES_LOG, METRICS_LOG, RunDir
from hieramas.learner.store import PolicyRecord, PolicyStore
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import TRACE_STREAM
from hieramas.wire import Envelope, Kind
from hieramas.wire.events import Feedback


@pytest.fixture
def bus(nats_server: NatsServer) -> Iterator[Bus]:
    running = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        yield running
    finally:
        running.stop()


def _counters(service) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(service.status()["counters"])


def test_episodes_are_graded_trained_on_and_published_as_versions(bus: Bus, tmp_path: Path) -> None:
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(9)
    with running_learner(bus, tmp_path) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        events = []
        for i, item in enumerate(items[:8]):  # 8 sampled episodes: two updates of 4
            events += query_events(item, policy_version=root, nodes_right=(i % 2 == 0, True))
            if i == 3:  # the greedy one before the second four, so that an update reports it
                # (placed last, the second update could take its window before it came)
                events += query_events(
                    items[8], policy_version=root, sampled=False, final_right=False
                )
        seqs = run(bus, publish(bus, events))
        wait(lambda: learner.lineage.step == 2, what="two updates")  # type: ignore[union-attr]
        wait(lambda: learner.status()["stream_seq"] == seqs[-1], what="every message")
        wait(lambda: learner.history and len(learner.history) == 2, what="two versions")
        records = run(bus, _records(bus))
    counters = _counters(learner)
    assert counters["episodes_train"] == 8 and counters["episodes_eval"] == 1
    versions = [r.version for r in records]
    assert versions == [root, root + 1, root + 2]
    assert [r.parent for r in records] == [None, root, root + 1]
    assert records[-1].meta["step"] == 2 and records[-1].meta["config_name"] == "toy-mmlu"
    assert records[-1].metrics["used"] == 4.0 and records[-1].metrics["accuracy"] == 1.0
    rows = RunDir(tmp_path).read_log(EPISODES_LOG)
    assert len(rows) == 9 and {r["disposition"] for r in rows} == {"train", "eval"}
    first = rows[0]
    assert first["nodes"]["a"]["correct"] is True and first["final_correct"] is True
    assert rows[1]["nodes"]["a"]["correct"] is False  # the node's own answer, graded apart
    assert rows[4]["final_correct"] is False and rows[4]["disposition"] == "eval"
    metrics = RunDir(tmp_path).read_log(METRICS_LOG)
    assert [m["version"] for m in metrics] == [root + 1, root + 2]
    [evaluated] = [m for m in metrics if m["eval_n"]]  # the greedy episode: graded, reported
    assert (evaluated["eval_n"], evaluated["eval_accuracy"]) == (1, 0.0)


async def _records(bus: Bus) -> list[PolicyRecord]:
    store = await PolicyStore(bus).open()
    records = await store.records()
    assert all(isinstance(r, PolicyRecord) for r in records)
    return records  # type: ignore[return-value]


def test_bad_input_is_rejected_logged_counted_and_the_learner_carries_on(
    bus: Bus, tmp_path: Path
) -> None:
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(6)
    with capture_logs() as logs, running_learner(bus, tmp_path, batch=2) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        first_lineage = learner.lineage.id  # type: ignore[union-attr]
        run(bus, publish_raw(bus, "query", b"\x00 not a trace envelope"))
        half_bad = Envelope(
            kind=Kind.TRACE,
            payload={"events": [{"event": "query", "query_id": "q"}, {"event": "nonsense"}]},
        )
        run(bus, publish_raw(bus, "query", bus.encode(half_bad)))
        unknown_item = query_events(items[0], policy_version=root, item_id="no_such_subject/7")
        unknown_config = query_events(items[1], policy_version=root, config_version=99)
        run(bus, publish(bus, [*unknown_item, *unknown_config]))
        # a good one after the bad: still an episode, buffered for training
        run(bus, publish(bus, query_events(items[2], policy_version=root)))
        wait(lambda: _counters(learner).get("episodes_train") == 1, what="the good episode")

        # a feedback score grades the episode that had no ground truth: now it trains
        fed = Feedback(query_id=unknown_item[-1].query_id, score=1.0, source="user")
        run(bus, publish(bus, [fed]))
        wait(lambda: learner.lineage.step == 1, what="an update with the fed episode")  # type: ignore[union-attr]

        # the config moves to another slot layout: a new lineage; old-layout episodes misfit
        other = {"a": ("Critic", 3)}
        run(bus, apply(bus, config_yaml(other, name="toy-mmlu-3")))
        wait(
            lambda: learner.lineage.id != first_lineage and learner.lineage.head is not None,  # type: ignore[union-attr]
            what="a new lineage and its root version",
        )
        run(bus, publish(bus, query_events(items[3], policy_version=root)))
        new_root = learner.lineage.head  # type: ignore[union-attr]
        fits = query_events(
            items[4], config_version=2, policy_version=new_root, nodes_right=(True,),
            layout_nodes=other,
        )  # fmt: skip
        run(bus, publish(bus, fits))
        wait(
            lambda: _counters(learner).get("episodes_train") == 3, what="the new lineage's episode"
        )
        status = learner.status()
    counters = status["counters"]
    assert status["bad_messages"] == 1 and status["bad_events"] == 2
    assert set(status["bad_codes"]) == {"garbled", "bad_event", "unknown_event"}
    assert counters["rejected_unknown_item"] == 1
    assert counters["rejected_unknown_config"] == 1
    assert counters["rejected_layout_mismatch"] == 1
    assert counters["feedback_applied"] == 1 and counters["episodes_awaiting_feedback"] == 1
    assert counters["lineages"] == 2
    rows = RunDir(tmp_path).read_log(EPISODES_LOG)
    fed_rows = [r for r in rows if r["query_id"] == fed.query_id]
    assert [r["disposition"] for r in fed_rows] == ["awaiting_feedback", "train"]
    assert fed_rows[1]["feedback"] is True and fed_rows[1]["final_correct"] is True
    assert all(n["answerless"] for n in fed_rows[1]["nodes"].values())  # α = 0: only R
    rejected = {e["code"] for e in logs if e["event"] == "learner.rejected"}
    assert rejected == {"unknown_item", "unknown_config", "layout_mismatch"}
    assert any(e["event"] == "traces.bad_record" for e in logs)
    assert any(e["event"] == "learner.new_lineage" for e in logs)


def test_a_message_of_garbage_alone_never_blocks_the_stream(bus: Bus, tmp_path: Path) -> None:
    """Garbage at the head of the stream, before the learner ever started, is read past."""
    run(bus, apply(bus, config_yaml()))
    run(bus, publish_raw(bus, "llm_call", msgspec.msgpack.encode({"events": 1})))
    with running_learner(bus, tmp_path) as learner:
        wait(lambda: learner.status()["stream_seq"] == 1, what="the garbage to be read")
        assert learner.status()["bad_messages"] == 1


def test_stale_samples_are_not_trained_on_and_a_rollback_is_followed(
    bus: Bus, tmp_path: Path
) -> None:
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(7)
    with running_learner(bus, tmp_path, batch=2, max_lag=1) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        for version, pair in ((root, items[0:2]), (root + 1, items[2:4])):
            run(
                bus,
                publish(bus, [e for it in pair for e in query_events(it, policy_version=version)]),
            )
            wait(lambda v=version: learner.lineage.head == v + 1, what=f"version {version + 1}")  # type: ignore[union-attr,misc]
        # two versions after it, the root's samples are stale (max_lag 1)
        run(bus, publish(bus, query_events(items[4], policy_version=root)))
        wait(lambda: _counters(learner).get("episodes_stale") == 1, what="a stale episode")

        async def roll_back() -> None:
            store = await PolicyStore(bus).open()
            await store.rollback(root + 1)

        run(bus, roll_back())
        wait(lambda: learner.lineage.head == root + 1, what="the rollback to be followed")  # type: ignore[union-attr]
        pair = items[5:7]
        run(
            bus, publish(bus, [e for it in pair for e in query_events(it, policy_version=root + 1)])
        )
        wait(lambda: learner.lineage.step == 3, what="an update after the rollback")  # type: ignore[union-attr]
        wait(lambda: learner.lineage.head == root + 3, what="its version")  # type: ignore[union-attr]
        records = run(bus, _records(bus))
    counters = _counters(learner)
    assert counters["rollbacks_followed"] == 1 and counters["episodes_stale"] == 1
    assert [r.parent for r in records] == [None, root, root + 1, root + 1]  # trained on from v2
    assert learner.lineage.heads == [root, root + 1, root + 2, root + 1, root + 3]  # type: ignore[union-attr]


def test_an_unexpected_error_reloads_the_saved_state_and_counts_nothing_twice(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hieramas.learner.reinforce import Trainer

    real_update = Trainer.update
    calls = []

    def flaky_update(self: Trainer, episodes):  # type: ignore[no-untyped-def]
        calls.append(len(episodes))
        stats = real_update(self, episodes)  # the weights moved...
        if len(calls) == 1:
            raise RuntimeError("injected: the first update fails after it changed the weights")
        return stats

    monkeypatch.setattr(Trainer, "update", flaky_update)
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(4)
    with capture_logs() as logs, running_learner(bus, tmp_path, batch=2) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        run(bus, publish(bus, [e for it in items for e in query_events(it, policy_version=root)]))
        # (while it recovers, it has no lineage in memory)
        wait(lambda: learner.lineage is not None and learner.lineage.step == 2, what="two updates")
        wait(lambda: len(learner.history) == 2, what="their versions")
        status = learner.status()
    assert learner.recoveries == 1 and status["recoveries"] == 1 and len(calls) == 3
    assert any(e["event"] == "learner.recovering" for e in logs)
    rows = RunDir(tmp_path).read_log(EPISODES_LOG)
    assert sorted(r["item_id"] for r in rows) == sorted(i.id for i in items)  # each once
    assert status["counters"]["episodes"] == 4 and status["counters"]["episodes_train"] == 4
    assert [m["step"] for m in RunDir(tmp_path).read_log(METRICS_LOG)] == [1, 2]


def test_a_config_read_failing_on_the_bus_loses_no_episode(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config-store read that times out is the bus's fault, not the episode's: the
    learner recovers and grades the episode again instead of rejecting it for good."""
    from nats.errors import TimeoutError as NatsTimeout

    from hieramas.controller.store import ConfigStore

    real_get = ConfigStore.get
    armed, failures = [], []

    async def flaky_get(self: ConfigStore, version: int | None = None):  # type: ignore[no-untyped-def]
        if armed and version is not None and not failures:
            failures.append(version)
            raise NatsTimeout
        return await real_get(self, version)

    monkeypatch.setattr(ConfigStore, "get", flaky_get)
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(2)
    with running_learner(bus, tmp_path, batch=2) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        armed.append(True)  # the next versioned read is the first episode's
        run(bus, publish(bus, [e for it in items for e in query_events(it, policy_version=root)]))
        wait(lambda: learner.lineage is not None and learner.lineage.step == 1, what="an update")
        status = learner.status()
    assert failures == [1] and learner.recoveries == 1
    counters = status["counters"]
    assert counters["episodes_train"] == 2 and "rejected_grading_failed" not in counters
    rows = RunDir(tmp_path).read_log(EPISODES_LOG)
    assert sorted(r["item_id"] for r in rows) == sorted(i.id for i in items)  # each once


@pytest.mark.parametrize("lost", [2, 5], ids=["a-middle-one", "the-last-one"])
def test_a_message_the_consumer_never_delivers_is_read_by_sequence(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: int
) -> None:
    """A pull delivery lost in transit (a consumer leader moving) would come back only after
    ack_wait, and the cumulative ack of a later message acknowledges it unread: the learner
    reads a skipped sequence from the stream itself, before the message after it or, for
    the stream's last message, when it finds the stream ends past what it read."""
    from hieramas.learner.consumer import TraceConsumer

    real_fetch = TraceConsumer.fetch
    dropped: list[int] = []
    target: list[int] = []

    async def lossy_fetch(self: TraceConsumer, batch: int, timeout: float):  # type: ignore[no-untyped-def]
        msgs = await real_fetch(self, batch, timeout)
        kept = [m for m in msgs if not (target and self.seq(m) == target[0] and not dropped)]
        dropped.extend(self.seq(m) for m in msgs if m not in kept)
        return kept

    monkeypatch.setattr(TraceConsumer, "fetch", lossy_fetch)
    run(bus, apply(bus, config_yaml()))
    items = mmlu_items(2)
    with running_learner(bus, tmp_path, batch=2) as learner:
        wait(lambda: learner.phase == "running", what="the learner to run")
        root = learner.lineage.head  # type: ignore[union-attr]
        events = [e for it in items for e in query_events(it, policy_version=root)]
        target.append(run(bus, _last_seq(bus)) + 1 + lost)  # a `query` event: node a, b, query
        seqs = run(bus, publish(bus, events))
        wait(lambda: learner.lineage.step == 1, what="an update with both episodes")  # type: ignore[union-attr]
        status = learner.status()
    assert dropped == [target[0]] == [seqs[lost]]
    counters = status["counters"]
    assert counters["stream_gap_read"] == 1 and counters["episodes_train"] == 2
    assert status["pending"] == 0 and "redelivered" not in counters
    rows = RunDir(tmp_path).read_log(EPISODES_LOG)
    assert {r["item_id"]: r["seq"] for r in rows} == {items[0].id: seqs[2], items[1].id: seqs[5]}


async def _last_seq(bus: Bus) -> int:
    info = await bus.js.stream_info(TRACE_STREAM)
    return int(info.state.last_seq)
