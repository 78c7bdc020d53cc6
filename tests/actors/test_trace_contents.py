"""What the trace stream tells a learner: the plan of each query, each node's parsed answer."""

from __future__ import annotations

import pytest

from hieramas.stack import Stack
from hieramas.tasks.answers import extract_answer
from hieramas.traces import ReadStats, replay
from hieramas.wire import Subjects
from hieramas.wire.events import (
    AssignmentRecord,
    DecisionRun,
    Event,
    QueryDone,
    SupernodeRun,
)
from support import apply_config, ask, config_yaml, node


def _events(stack: Stack) -> list[Event]:
    """Every trace event so far (after flushing this stack's emitters); none unreadable."""
    assert stack.bus is not None and stack.controller is not None
    stack.bus.call(stack.controller.traces.flush(), 10)
    for worker in stack.workers:
        stack.bus.call(worker.ctx.traces.flush(), 10)
    stats = ReadStats()
    events = stack.bus.call(replay(stack.bus, Subjects(), stats=stats), 10)
    assert stats.skipped == 0, stats.summary()
    return events


def test_the_query_event_carries_item_assignment_edges_and_policy_and_nodes_their_answers(
    stack: Stack, llm_url: str
) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:B", "skip", "fixed:C"], "fixed:B"),
            "critic": node("Critic", ["fixed:C", "fixed:C"], "vote"),
            "doctor": node("Doctor", ["fixed:A"], "skip"),  # dropped from the plan
        },
        [("expert", "critic"), ("doctor", "critic"), ("expert", "doctor")],
        decision="fixed:B",
    )
    version = apply_config(stack, cfg)
    result = ask(stack, "Which option?", item_id="mmlu_redux/anatomy/3", domain="mmlu")
    assert result["status"] == "ok"
    assert (result["item_id"], result["planner"], result["policy_version"]) == (
        "mmlu_redux/anatomy/3",
        "static",
        None,
    )
    mine = [e for e in _events(stack) if e.query_id == result["query_id"]]

    [query] = [e for e in mine if isinstance(e, QueryDone)]
    assert query.item_id == "mmlu_redux/anatomy/3" and query.domain == "mmlu"
    assert query.config_version == version
    assert (query.planner, query.policy_version, query.sampled) == ("static", None, False)
    assert query.assignment == AssignmentRecord(
        proposers={
            "expert": ["fixed:B", "skip", "fixed:C"],
            "critic": ["fixed:C", "fixed:C"],
            "doctor": ["fixed:A"],
        },
        synthesizers={"expert": "fixed:B", "critic": "vote", "doctor": "skip"},
        decision="fixed:B",
    )
    assert query.edges == [("expert", "critic")]  # the doctor's edges went with it
    assert query.skipped_nodes == ["doctor"]
    assert query.cost_usd == pytest.approx(result["cost_usd"])

    runs = {e.node: e for e in mine if isinstance(e, SupernodeRun)}
    assert set(runs) == {"expert", "critic"}
    for name, run in runs.items():  # parsed once, at the node, for the query's domain
        assert run.answer == extract_answer("mmlu", result["nodes"][name]["text"])
    assert (runs["expert"].answer, runs["critic"].answer) == ("B", "C")
    assert runs["expert"].models.proposers == ["fixed:B", None, "fixed:C"]
    assert runs["critic"].models.synthesizer == "vote"
    [decision] = [e for e in mine if isinstance(e, DecisionRun)]
    assert decision.decided_by == "llm" and decision.answer == result["answer"] == "B"


def test_a_query_without_an_item_and_a_query_refused_before_planning_are_traced_too(
    stack: Stack, llm_url: str
) -> None:
    apply_config(stack, config_yaml(llm_url, {"a": node("Critic", ["fixed:A"], "fixed:A")}))
    plain = ask(stack, "Which option?")
    refused = ask(stack, "Which option?", config_version=99)
    assert plain["status"] == "ok" and plain["item_id"] is None
    assert refused["status"] == "no_config"
    queries = {e.query_id: e for e in _events(stack) if isinstance(e, QueryDone)}
    assert queries[plain["query_id"]].item_id is None
    assert queries[plain["query_id"]].assignment is not None
    bare = queries[refused["query_id"]]
    assert (bare.status, bare.assignment, bare.planner, bare.edges) == ("no_config", None, None, [])


def test_a_non_string_item_id_is_refused(stack: Stack, llm_url: str) -> None:
    from hieramas.wire import Envelope, Kind, new_id

    apply_config(stack, config_yaml(llm_url, {"a": node("Critic", ["fixed:A"], "fixed:A")}))
    assert stack.bus is not None
    envelope = Envelope(
        kind=Kind.QUERY, payload={"text": "Which option?", "item_id": 7}, query_id=new_id()
    )
    reply = stack.bus.call(stack.bus.arequest(Subjects().query, envelope, 10), 15)
    assert reply.payload["status"] == "bad_query" and "item_id" in reply.payload["error"]
