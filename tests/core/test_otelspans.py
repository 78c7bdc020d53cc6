"""Trace events to GenAI spans (unit level), and the W3C traceparent a query may carry (parsed,
and honoured or refused by a real gateway)."""

from __future__ import annotations

import asyncio

import pytest

from hieramas.bus import RemoteError
from hieramas.otelspans import span_id_of, span_records, trace_id_of
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Envelope, Kind, Subjects, WireError, new_id
from hieramas.wire.events import (
    DecisionRun,
    LlmCall,
    NodeModels,
    QueryDone,
    SupernodeRun,
    VoteRecord,
    VoteRun,
)
from hieramas.wire.traceparent import parse_traceparent
from support import apply_config, ask, client_of, config_yaml, node

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _call(**kw: object) -> LlmCall:
    fields: dict[str, object] = {
        "query_id": "q1", "trace_id": TRACE, "config_version": 3, "node": "expert",
        "role": "Critic", "slot": "p0", "attempt": 1, "worker": "w1", "model": "m",
        "model_id": "gpt-x", "endpoint": "ep", "started": 100.0, "finished": 101.5,
        "outcome": "ok", "prompt_tokens": 7, "completion_tokens": 3, "cost_usd": 0.01,
    }  # fmt: skip
    fields.update(kw)
    return LlmCall(**fields)  # type: ignore[arg-type]


def test_a_proposer_call_is_a_chat_span_under_its_slot_under_its_node() -> None:
    slot, chat = span_records(_call())
    assert slot.name == "invoke_agent expert.p0"
    assert slot.parent_id == span_id_of("q1", "node", "expert")
    assert chat.name == "chat gpt-x" and chat.kind == "client"
    assert chat.parent_id == slot.span_id
    assert chat.trace_id == slot.trace_id == int(TRACE, 16)
    assert (chat.start_ns, chat.end_ns) == (100_000_000_000, 101_500_000_000)
    a = chat.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "gpt-x"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 3)
    assert (a["hieramas.slot"], a["hieramas.attempt"], a["hieramas.worker"]) == ("p0", 1, "w1")
    assert chat.error is None and "error.type" not in a


def test_spans_are_the_same_from_the_same_event_and_differ_by_attempt() -> None:
    assert span_records(_call()) == span_records(_call())  # a redelivery sends the same ids
    first, again = span_records(_call())[1], span_records(_call(attempt=2))[1]
    assert first.span_id != again.span_id


def test_a_failed_call_has_error_type_and_a_redacted_status() -> None:
    failed = _call(
        outcome="error",
        error="m: connect to http://user:hunter2@llm.example/v1 failed",
        error_kind="connection",
    )
    slot, chat = span_records(failed)
    assert chat.attributes["error.type"] == slot.attributes["error.type"] == "connection"
    assert chat.error is not None and "hunter2" not in chat.error
    assert "gen_ai.usage.input_tokens" not in chat.attributes


def test_the_decision_call_hangs_under_the_decision_node() -> None:
    (chat,) = span_records(_call(node="decision", role="decision", slot="decision"))
    assert chat.parent_id == span_id_of("q1", "node", "decision")


def test_nodes_and_the_query_make_the_rest_of_the_tree() -> None:
    (node,) = span_records(
        SupernodeRun(
            query_id="q1", trace_id=TRACE, config_version=3, node="expert", role="Critic",
            status="error", error="synthesizer failed", answer="A",
            models=NodeModels(proposers=["m"], synthesizer="m"), started=1.0, finished=2.0,
        )
    )  # fmt: skip
    assert node.name == "invoke_agent expert" and node.attributes["gen_ai.agent.name"] == "expert"
    assert node.parent_id == span_id_of("q1", "query")
    assert node.attributes["error.type"] == "node_failed"
    assert "gen_ai.output.messages" not in node.attributes  # content is opt-in
    (decision,) = span_records(
        DecisionRun(query_id="q1", trace_id=TRACE, config_version=3, status="ok",
                    decided_by="agreement", finished=3.0)
    )  # fmt: skip
    assert decision.span_id == span_id_of("q1", "node", "decision")
    query = QueryDone(
        query_id="q1", trace_id=TRACE, parent_span="00f067aa0ba902b7", started=0.5,
        finished=3.5, status="ok", config_version=3, policy_version=7, task_text="2+2?",
        text="4", latency_s=3.0,
    )  # fmt: skip
    (workflow,) = span_records(query)
    assert workflow.name == "invoke_workflow hieramas"
    assert workflow.parent_id == 0x00F067AA0BA902B7 and workflow.parent_remote
    assert workflow.attributes["hieramas.policy_version"] == 7
    assert "gen_ai.input.messages" not in workflow.attributes
    (with_content,) = span_records(query, content=True)
    assert "2+2?" in str(with_content.attributes["gen_ai.input.messages"])


def test_a_top_k_votes_runs_are_spans_under_the_query_and_hold_their_nodes() -> None:
    runs = [
        VoteRun(run_id="q1-v1", rank=1, edges=[("a", "b")], status="ok", answer="B",
                latency_s=1.0),
        VoteRun(run_id="q1-v2", rank=2, edges=[], status="timeout", latency_s=3.0),
    ]  # fmt: skip
    query = QueryDone(
        query_id="q1", trace_id=TRACE, started=0.5, finished=3.5, status="ok", latency_s=3.0,
        vote=VoteRecord(runs=runs, chosen=1),
    )  # fmt: skip
    workflow, first, second = span_records(query)
    assert first.parent_id == second.parent_id == workflow.span_id
    assert first.trace_id == second.trace_id == workflow.trace_id
    assert first.attributes["hieramas.vote_chosen"] and first.error is None
    assert first.end_ns - first.start_ns == 1_000_000_000
    assert second.error == "timeout" and not second.attributes["hieramas.vote_chosen"]
    node = SupernodeRun(
        query_id="q1-v1", trace_id=TRACE, config_version=1, node="a", role="Critic",
        status="ok", models=NodeModels(proposers=[], synthesizer="m"), started=1, finished=2,
    )  # fmt: skip
    (node_span,) = span_records(node)
    assert node_span.parent_id == first.span_id  # a run's nodes hang under its span
    assert len(span_records(QueryDone(query_id="q2", status="ok"))) == 1  # no vote: one span


def test_short_and_missing_trace_ids_still_give_valid_ids() -> None:
    assert trace_id_of(_call(trace_id="00000000000000ab")) == 0xAB
    assert trace_id_of(_call(trace_id="")) != 0
    assert trace_id_of(_call(trace_id="not hex at all!!")) != 0


def test_traceparent_is_parsed_and_bad_ones_are_refused() -> None:
    caller = parse_traceparent(f"00-{TRACE}-00f067aa0ba902b7-01")
    assert (caller.trace_id, caller.span_id, caller.sampled) == (TRACE, "00f067aa0ba902b7", True)
    assert caller.header() == f"00-{TRACE}-00f067aa0ba902b7-01"
    for bad in (
        "", "garbage", 42, f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE.upper()}-00f067aa0ba902b7-01",
        f"00-{TRACE}-00f067aa0ba902b7-01-extra", "x" * 1000,
    ):  # fmt: skip
        with pytest.raises(WireError) as info:
            parse_traceparent(bad)
        assert info.value.code == "bad_traceparent"


def test_the_gateway_joins_a_good_traceparent_and_refuses_a_malformed_one(
    stack: Stack, llm_url: str
) -> None:
    apply_config(stack, config_yaml(llm_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")}))
    result = ask(stack, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
    assert result["status"] == "ok" and result["trace_id"] == TRACE
    assert len(ask(stack)["trace_id"]) == 32  # a fresh 128-bit trace id otherwise
    client = client_of(stack)
    assert stack.bus is not None
    envelope = Envelope(
        kind=Kind.QUERY,
        payload={"text": "Which option?", "traceparent": "00-not-a-traceparent"},
        query_id=new_id(),
        trace_id=new_id(),
        sender="test",
    )  # the client refuses to send it: a raw one, as any NATS user could
    try:
        reply = stack.bus.call(client._request(client.subjects.query, envelope, 30), 40).payload
    except RemoteError as exc:
        reply = {"status": exc.code, "error": exc.detail}
    assert reply["status"] == "bad_query" and "traceparent" in str(reply["error"])
    with pytest.raises(WireError):
        stack.bus.call(client.ask("Which option?", traceparent="nope"), 10)

    async def query_events() -> list[QueryDone]:
        await asyncio.sleep(0.5)  # the gateway's last batch lingers 0.1 s
        events = await replay(stack.bus, Subjects(), idle_s=0.3)  # type: ignore[arg-type]
        return [e for e in events if isinstance(e, QueryDone)]

    done = {e.query_id: e for e in stack.bus.call(query_events(), 30)}
    joined = done[result["query_id"]]
    assert joined.trace_id == TRACE and joined.parent_span == "00f067aa0ba902b7"
    assert joined.started is not None and joined.finished >= joined.started
