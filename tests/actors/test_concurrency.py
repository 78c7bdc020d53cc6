"""Independent supernodes run at the same time: proven by the timestamps in the trace stream."""

from __future__ import annotations

import pytest

from hieramas.controller.client import HieraClient
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import LlmCall, QueryDone, SupernodeRun
from support import config_yaml, node


def test_independent_supernodes_overlap_in_time(nats_server: NatsServer, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["slow:0.3"], "fixed:A"),
            "critic": node("Critic", ["slow:0.3"], "fixed:A"),
            "doctor": node("Doctor", ["slow:0.3"], "fixed:A"),
            "lawyer": node("Lawyer", ["fixed:A"], "fixed:A"),
        },
        [("expert", "lawyer"), ("critic", "lawyer"), ("doctor", "lawyer")],
        extra_llms=["slow:0.3"],
    )
    with Stack(nats_url=nats_server.url) as stack:
        assert stack.bus is not None
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(cfg), 10)
        result = stack.bus.call(client.ask("Which option?"), 30)
        assert result["status"] == "ok"
        stack.bus.call(stack.controller.traces.flush(), 10)  # type: ignore[union-attr]
        for worker in stack.workers:
            stack.bus.call(worker.ctx.traces.flush(), 10)
        events = stack.bus.call(replay(stack.bus, Subjects()), 10)

    mine = [e for e in events if e.query_id == result["query_id"]]
    runs = {e.node: e for e in mine if isinstance(e, SupernodeRun)}
    assert set(runs) == {"expert", "critic", "doctor", "lawyer"}
    sources = [runs[n] for n in ("expert", "critic", "doctor")]
    # all three independent nodes were running at one common instant...
    assert max(r.started or 0.0 for r in sources) < min(r.finished for r in sources)
    # ...so together they took far less than three 0.3 s calls in a row
    span = max(r.finished for r in sources) - min(r.started or 0.0 for r in sources)
    assert span < 0.6
    # and the join node waited for all of them
    assert (runs["lawyer"].started or 0.0) >= max(r.finished for r in sources)
    # every LLM call and the query itself are traced
    calls = [e for e in mine if isinstance(e, LlmCall)]
    assert len(calls) == 8  # 4 proposers + 4 synthesizers (the decision had agreement)
    assert all(c.prompt_tokens > 0 and c.model for c in calls)
    assert sorted(c.slot for c in calls) == ["p0"] * 4 + ["synth"] * 4
    assert [c.attempt for c in calls] == [1] * 8
    assert {c.node for c in calls} == set(runs)
    assert all(c.outcome == "ok" and c.cost_usd > 0 and c.trace_id for c in calls)
    assert sum(c.cost_usd for c in calls) == pytest.approx(result["cost_usd"])
    assert [e.status for e in mine if isinstance(e, QueryDone)] == ["ok"]
