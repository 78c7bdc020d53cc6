"""A crashed actor (a bug, injected here) fails its in-flight queries at once and is replaced."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hieramas.actors.decision import DecisionActor
from hieramas.actors.join import JoinActor, NodeRun
from hieramas.actors.supernode import SupernodeActor
from hieramas.controller.plan import Plan
from hieramas.stack import Stack
from support import apply_config, ask, client_of, config_yaml, node

SLOW = "slow:3"


def _crash_on_boom(monkeypatch: pytest.MonkeyPatch, actor: type[JoinActor]) -> None:
    """Make ``actor`` raise (a stand-in for a bug) on the query whose task is ``boom``."""
    if actor is SupernodeActor:
        original_run = SupernodeActor.run_node

        def run_node(self: SupernodeActor, run: NodeRun) -> None:
            if run.plan.task_text == "boom":
                raise RuntimeError("injected bug")
            original_run(self, run)

        monkeypatch.setattr(SupernodeActor, "run_node", run_node)
    else:
        original_preds = DecisionActor.predecessors

        def predecessors(self: DecisionActor, plan: Plan) -> tuple[str, ...]:
            if plan.task_text == "boom":
                raise RuntimeError("injected bug")
            return original_preds(self, plan)

        monkeypatch.setattr(DecisionActor, "predecessors", predecessors)


@pytest.mark.parametrize("actor", [SupernodeActor, DecisionActor], ids=["supernode", "decision"])
def test_a_crashed_node_fails_its_queries_at_once_and_is_replaced(
    stack: Stack, llm_url: str, monkeypatch: pytest.MonkeyPatch, actor: type[JoinActor]
) -> None:
    apply_config(
        stack,
        config_yaml(llm_url, {"expert": node("Critic", [SLOW], "fixed:A")}, extra_llms=[SLOW]),
    )
    _crash_on_boom(monkeypatch, actor)
    assert stack.bus is not None
    client, counters = client_of(stack), stack.bus.counters

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        in_flight = [asyncio.ensure_future(client.ask(f"q{i}")) for i in range(4)]
        await asyncio.sleep(0.3)  # all four wait for their 3 s proposer call
        crashed_at = time.monotonic()
        results = await asyncio.gather(*in_flight, client.ask("boom"))
        return list(results), time.monotonic() - crashed_at

    results, waited = stack.bus.call(scenario(), 60)
    assert waited < 2.0  # ended by the crash, not by the 3 s calls, let alone the 30 s deadline
    if actor is SupernodeActor:  # the node failed explicitly; the decision answered without it
        assert {(r["status"], r["decided_by"]) for r in results} == {("ok", "alone_all_failed")}
        assert {r["nodes"]["expert"]["error"] for r in results} == {
            "node expert crashed: RuntimeError: injected bug"
        }
    else:  # the decision node failed: so did the queries
        assert {r["status"] for r in results} == {"error"}
        assert {r["error"] for r in results} == {
            "node decision crashed: RuntimeError: injected bug"
        }
    assert counters["actor.crashed"] == 1 and counters["actor.restarted"] == 1
    assert counters["node.crash_failed"] == 5
    after = ask(stack)  # the replacement serves the next query normally
    assert (after["status"], after["decided_by"]) == ("ok", "agreement")
    assert counters["actor.crashed"] == 1


def test_idle_actors_retire_and_the_actor_count_has_a_ceiling(stack: Stack, llm_url: str) -> None:
    apply_config(
        stack, config_yaml(llm_url, {"expert": node("Critic", ["fixed:A", "fixed:B"], "fixed:A")})
    )
    worker = stack.workers[0]
    assert ask(stack)["status"] == "ok"
    # the supernode and the decision; the supernode calls the slots this worker serves
    # itself (locality-aware delivery), so no proposer or synthesizer actor is started
    assert worker.actor_count == 2
    assert worker.evict_idle(older_than_s=0) == 2
    deadline = time.monotonic() + 5
    while worker.actor_count:  # each retires on its own loop turn
        assert time.monotonic() < deadline, worker.actor_count
        time.sleep(0.01)
    assert worker.counters["actor.evicted"] == 2
    assert ask(stack)["status"] == "ok"  # fresh actors serve the next query
    worker.max_actors = 1  # the activation arms the supernode, then finds no room for the decision
    worker.evict_idle(older_than_s=0)
    while worker.actor_count:
        time.sleep(0.01)
    refused = ask(stack)
    assert refused["status"] == "overloaded", refused
    assert worker.counters["actor.ceiling"] >= 1
    worker.max_actors = 5
    assert ask(stack)["status"] == "ok"


def test_a_slot_call_that_ends_after_its_node_stopped_is_counted_not_raised(
    stack: Stack, llm_url: str
) -> None:
    """The supernode makes its worker's own slot calls; when one ends after the node's actor
    has stopped (its worker stopping, say), the result is counted as late and dropped."""
    slow = "slow:0.5"
    apply_config(
        stack,
        config_yaml(llm_url, {"expert": node("Critic", [slow], "fixed:A")}, extra_llms=[slow]),
    )
    assert stack.bus is not None
    worker, counters, client = stack.workers[0], stack.bus.counters, client_of(stack)
    before = counters["late_result"]

    async def scenario() -> dict[str, Any]:
        pending = asyncio.ensure_future(client.ask("q", timeout_s=2))
        await asyncio.sleep(0.2)  # the proposer's call is in flight, made by the supernode
        worker._actors[("supernode", "expert", "")].stop(block=False)
        await asyncio.sleep(0.6)  # the call ends: its node is gone
        return await pending

    result = stack.bus.call(scenario(), 30)
    assert counters["late_result"] == before + 1
    assert result["status"] in ("ok", "timeout")  # re-armed and answered, or at its deadline
    assert ask(stack)["status"] == "ok"  # the worker serves the next query
