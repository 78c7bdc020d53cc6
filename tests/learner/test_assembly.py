"""Assembling episodes from events in any order: completion, grace, bounds, idempotence."""

from __future__ import annotations

import itertools

from learner_traces import query_events

from hieramas.learner.assembly import Assembled, Assembler
from hieramas.wire.events import AssignmentRecord, Feedback, LlmCall, QueryDone, SupernodeRun


def _feed(assembler: Assembler, events, now: float = 0.0) -> list:  # type: ignore[no-untyped-def]
    out = []
    for event in events:
        out += assembler.add(event, now)
    return out


def test_a_query_completes_once_whatever_the_order_of_its_events() -> None:
    events = query_events(None, query_id="q1")  # supernode a, supernode b, query
    for order in itertools.permutations(events):
        assembler = Assembler()
        done = _feed(assembler, order)
        assert len(done) == 1 and isinstance(done[0], Assembled)
        assert set(done[0].nodes) == {"a", "b"} and done[0].missing == ()
        assert len(assembler) == 0 and set(assembler.done) == {"q1"}
        # the same events again (a redelivery, a duplicate publish): nothing new
        assert _feed(assembler, order) == []
        assert assembler.counters["duplicate_query"] == 1 and assembler.counters["late_event"] == 2


def test_a_skipped_supernode_is_not_waited_for_and_call_events_are_only_counted() -> None:
    nodes = query_events(None, query_id="q2")[:-1]
    skipped = QueryDone(
        query_id="q2",
        status="ok",
        config_version=1,
        assignment=AssignmentRecord(
            proposers={"a": ["cheap"], "b": ["skip"]},
            synthesizers={"a": "cheap", "b": "skip"},
            decision="cheap",
        ),
    )
    call = LlmCall(
        query_id="q2", config_version=1, node="a", role="Critic", slot="p0", worker="w",
        model="cheap", model_id="cheap", endpoint="emu", started=0, finished=1, outcome="ok",
    )  # fmt: skip
    assembler = Assembler()
    assert _feed(assembler, [call, skipped]) == []
    [done] = _feed(assembler, [nodes[0]])
    assert set(done.nodes) == {"a"}
    assert assembler.counters["ignored_llm_call"] == 1


def test_after_the_grace_period_missing_supernodes_count_as_failed() -> None:
    *nodes, query = query_events(None, query_id="q3")
    assembler = Assembler(grace_s=5.0)
    assert _feed(assembler, [nodes[0], query], now=100.0) == []
    assert assembler.expire(104.9) == []
    [done] = assembler.expire(105.0)
    assert done.missing == ("b",) and set(done.nodes) == {"a"}
    assert assembler.counters["completed_by_grace"] == 1
    assert assembler.add(nodes[1], 106.0) == []  # too late: counted, never a second episode
    assert assembler.counters["late_event"] == 1


def test_the_pending_buffer_is_bounded_and_orphans_are_dropped() -> None:
    assembler = Assembler(max_pending=3, orphan_s=60.0)
    for i in range(5):  # node events of five queries whose query events never come
        _feed(assembler, query_events(None, query_id=f"o{i}")[:1], now=float(i))
    assert len(assembler) == 3 and assembler.counters["evicted"] == 2
    assembler.expire(61.5)  # the oldest left, o2 (seen at 2.0), is not yet 60 s old
    assert len(assembler) == 3
    assembler.expire(63.0)  # o2 and o3 are orphans now
    assert len(assembler) == 1 and assembler.counters["orphaned"] == 2


def test_feedback_waits_with_its_query_or_is_handed_out_for_a_finished_one() -> None:
    events = query_events(None, query_id="q4")
    early = Feedback(query_id="q4", score=1.0, source="user")
    assembler = Assembler()
    [done] = _feed(assembler, [early, *events])
    assert done.feedback == (early,)
    late = Feedback(query_id="q4", score=0.0, source="user")
    assert assembler.add(late, 1.0) == [late]


def test_the_partial_state_round_trips_for_a_restart() -> None:
    *nodes, query = query_events(None, query_id="q5")
    assembler = Assembler(grace_s=5.0)
    _feed(assembler, [nodes[0], query, Feedback(query_id="q5", score=1.0, source="u")], now=10.0)
    _feed(assembler, query_events(None, query_id="q6"))
    restored = Assembler(grace_s=5.0)
    restored.load_json(assembler.to_json(), now=50.0)
    assert restored.expire(54.0) == []  # a full grace period after the restart
    assert set(restored.done) == {"q6"} and len(restored) == 1
    [done] = restored.add(nodes[1], 11.0)
    assert isinstance(done.query, QueryDone) and isinstance(done.nodes["b"], SupernodeRun)
    assert len(done.feedback) == 1
    assert restored.counters["assembled"] == 2  # its counters came along


def test_the_done_ids_are_a_bounded_window_that_survives_a_restart() -> None:
    assembler = Assembler(done_keep_s=100.0, max_done=3)
    for i in range(5):  # five queries handed out at t = 0..4
        _feed(assembler, query_events(None, query_id=f"w{i}"), now=float(i))
    assert list(assembler.done) == ["w2", "w3", "w4"]  # at most 3, oldest forgotten first
    assert assembler.counters["done_forgotten"] == 2
    # within the window a duplicate is still refused, after a restart too
    restored = Assembler(done_keep_s=100.0, max_done=3)
    restored.load_json(assembler.to_json(), now=5.0)
    assert _feed(restored, query_events(None, query_id="w3"), now=5.0) == []
    assert restored.counters["duplicate_query"] == 1
    # ids older than done_keep_s are forgotten as time passes
    restored.expire(102.5)  # w2 was handed out at 2.0
    assert list(restored.done) == ["w3", "w4"]
    restored.expire(200.0)
    assert not restored.done and restored.counters["done_forgotten"] == 5
    # a state saved before the window (bare ids) still loads, the ids counted from now
    legacy = Assembler(done_keep_s=100.0)
    legacy.load_json({"done": ["old1", "old2"]}, now=7.0)
    assert legacy.done == {"old1": 7.0, "old2": 7.0}
