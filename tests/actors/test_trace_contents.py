"""What the trace stream tells a learner: the plan of each query, each node's parsed answer,
and each query's own cost, exact while other queries run at the same time."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
import yaml

from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.tasks.answers import extract_answer
from hieramas.traces import ReadStats, replay
from hieramas.wire import Subjects
from hieramas.wire.events import (
    AssignmentRecord,
    DecisionRun,
    Event,
    LlmCall,
    QueryDone,
    SupernodeRun,
)
from support import apply_config, ask, client_of, config_yaml, node


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
    refused = ask(stack, "Which option?", config_version=99, item_id="mmlu/9")
    assert plain["status"] == "ok" and plain["item_id"] is None
    assert refused["status"] == "no_config"
    queries = {e.query_id: e for e in _events(stack) if isinstance(e, QueryDone)}
    assert queries[plain["query_id"]].item_id is None
    assert queries[plain["query_id"]].assignment is not None
    bare = queries[refused["query_id"]]
    assert (bare.status, bare.assignment, bare.planner, bare.edges) == ("no_config", None, None, [])
    assert bare.item_id == "mmlu/9"  # still gradable as a failure of that item


def test_a_non_string_item_id_is_refused(stack: Stack, llm_url: str) -> None:
    from hieramas.wire import Envelope, Kind, new_id

    apply_config(stack, config_yaml(llm_url, {"a": node("Critic", ["fixed:A"], "fixed:A")}))
    assert stack.bus is not None
    envelope = Envelope(
        kind=Kind.QUERY, payload={"text": "Which option?", "item_id": 7}, query_id=new_id()
    )
    reply = stack.bus.call(stack.bus.arequest(Subjects().query, envelope, 10), 15)
    assert reply.payload["status"] == "bad_query" and "item_id" in reply.payload["error"]


def _priced(llm_url: str, prices: dict[str, tuple[str, float, float]], name: str) -> str:
    """A config of two supernodes over the pool ``prices`` (name -> model, $/M in, $/M out)."""
    llms = {n: {"endpoint": "s", "model": m, "price_in": i, "price_out": o} for n, (m, i, o) in prices.items()}  # fmt: skip
    names = list(prices)
    return yaml.safe_dump(
        {
            "name": name,
            "domain": "mmlu",
            "endpoints": {"s": {"base_url": llm_url, "max_retries": 0, "max_concurrency": 64}},
            "llms": llms,
            "supernodes": {
                "a": node("Critic", [names[0], names[1]], names[2]),
                "b": node("Doctor", [names[1]], names[0]),
            },
            "edges": [["a", "b"]],
            "decision": names[2],
            "limits": {"query_timeout_s": 30, "node_timeout_s": 30},
        }
    )


def test_each_query_costs_exactly_its_own_calls_while_queries_with_other_prices_run_at_once(
    nats_server: NatsServer, llm_url: str
) -> None:
    """Two config versions price different models differently; 16 queries of both, with
    prompts of different lengths, overlap in time.  Each query's cost (its result and its
    trace event) is the sum of its own llm_call events, and each call's cost is its own
    tokens at its own model's prices: no cost leaks from one query into another."""
    pools = {
        1: {"x": ("slow:0.3", 1.0, 2.0), "y": ("fixed:B", 3.0, 5.0), "z": ("fixed:C", 7.0, 11.0)},
        2: {"x": ("slow:0.3", 13.0, 17.0), "y": ("fixed:A", 19.0, 23.0), "z": ("echo", 29.0, 31.0)},
    }  # fmt: skip
    with Stack(nats_url=nats_server.url) as stack:
        for version, pool in pools.items():
            assert apply_config(stack, _priced(llm_url, pool, f"v{version}")) == version
        client = client_of(stack)

        async def all_at_once() -> list[dict[str, Any]]:
            return await asyncio.gather(
                *(
                    client.ask("Which option? " + "why " * (5 * i), config_version=1 + i % 2)
                    for i in range(16)
                )
            )

        assert stack.bus is not None
        results = stack.bus.call(all_at_once(), 60)
        events = _events(stack)

    assert [r["status"] for r in results] == ["ok"] * 16
    by_query: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_query[event.query_id].append(event)
    spans = []
    for result in results:
        mine = by_query[result["query_id"]]
        calls = [e for e in mine if isinstance(e, LlmCall)]
        [query] = [e for e in mine if isinstance(e, QueryDone)]
        pool = pools[result["config_version"]]
        assert len(calls) == 6  # 3 + 2 slot calls, and the decision (the nodes disagree)
        for call in calls:
            _, price_in, price_out = pool[call.model]
            own = (call.prompt_tokens * price_in + call.completion_tokens * price_out) / 1e6
            assert call.cost_usd == pytest.approx(own, rel=1e-9)
            assert call.config_version == result["config_version"]
        total = sum(c.cost_usd for c in calls)
        assert result["cost_usd"] == pytest.approx(total, rel=1e-9)
        assert query.cost_usd == pytest.approx(total, rel=1e-9)
        nodes = [e for e in mine if isinstance(e, SupernodeRun | DecisionRun)]
        assert sum(n.cost_usd for n in nodes) == pytest.approx(total, rel=1e-9)
        spans.append((min(c.started for c in calls), max(c.finished for c in calls)))
    assert len({round(r["cost_usd"], 12) for r in results}) == 16  # every query's cost differs
    assert max(s for s, _ in spans) < min(f for _, f in spans)  # all 16 ran at one instant
