"""Trace events: typed records that encode as plain msgpack maps and decode to typed errors."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest

from hieramas.wire import Envelope, Kind, WireError, encode
from hieramas.wire.events import (
    EVENT_TYPES,
    AssignmentRecord,
    DecisionRun,
    Event,
    EventError,
    Feedback,
    LlmCall,
    NodeModels,
    QueryDone,
    SupernodeRun,
    decode_event,
    decode_trace_message,
    event_json,
)

SAMPLES: list[Event] = [
    LlmCall(
        query_id="q1", trace_id="t1", span_id="s1", config_version=3, parent_span="p",
        node="expert", role="Critic", slot="p0", attempt=2, worker="w-1", model="cheap",
        model_id="fixed:A", endpoint="scripted", started=1.0, finished=2.0, outcome="ok",
        prompt_tokens=10, completion_tokens=5, cost_usd=2e-5, latency_s=1.0,
    ),
    SupernodeRun(
        query_id="q1", config_version=3, node="expert", role="Critic", status="ok",
        answer="B", models=NodeModels(proposers=["cheap", None], synthesizer="vote"),
        vote={"method": "plurality"}, failures=["p1: boom"], started=1.0, finished=2.0,
    ),
    DecisionRun(query_id="q1", config_version=3, status="ok", answer="B", decided_by="agreement"),
    QueryDone(
        query_id="q1", config_version=3, status="ok", answer="B", item_id="mmlu/7",
        domain="mmlu", planner="learned", policy_version=4, sampled=True,
        assignment=AssignmentRecord(
            proposers={"expert": ["cheap", "skip"]}, synthesizers={"expert": "vote"},
            decision="dear",
        ),
        edges=[("expert", "critic")],
    ),
    Feedback(query_id="q1", score=0.5, source="user", comment="close", ts=5.0),
]  # fmt: skip


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.event)
def test_every_event_round_trips_as_a_plain_msgpack_map(event: Event) -> None:
    data = msgspec.msgpack.encode(event)
    plain = msgpack.unpackb(data)
    assert isinstance(plain, dict) and plain["event"] == event.event
    assert next(iter(plain)) == "event"  # the tag leads the map
    assert decode_event(data) == event  # from bytes
    assert decode_event(plain) == event  # from a decoded map (what a trace message holds)
    assert EVENT_TYPES[event.event] is type(event)


def test_extra_fields_are_ignored_so_newer_emitters_do_not_break_readers() -> None:
    plain = msgpack.unpackb(msgspec.msgpack.encode(SAMPLES[-1]))
    assert decode_event({**plain, "added_later": [1, 2]}) == SAMPLES[-1]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xc1garbage", "garbled"),
        (msgpack.packb([1, 2]), "garbled"),
        ([1, 2], "garbled"),
        ({"query_id": "q"}, "unknown_event"),
        ({"event": "telemetry", "query_id": "q"}, "unknown_event"),
        ({"event": "feedback", "query_id": "q", "source": "user"}, "bad_event"),  # no score
        ({"event": "feedback", "query_id": "q", "score": "high", "source": "u"}, "bad_event"),
        ({"event": "llm_call", "query_id": 7}, "bad_event"),
    ],
)
def test_bad_records_raise_one_typed_error(raw: Any, code: str) -> None:
    with pytest.raises(EventError) as caught:
        decode_event(raw)
    assert caught.value.code == code
    assert isinstance(caught.value, WireError)  # a reader catching wire errors catches these


def test_a_trace_message_yields_its_good_events_and_an_error_per_bad_record() -> None:
    good = [msgpack.unpackb(msgspec.msgpack.encode(e)) for e in SAMPLES[:2]]
    payload = {"events": [good[0], {"event": "nope", "query_id": "q"}, 42, good[1]]}
    batch = decode_trace_message(encode(Envelope(kind=Kind.TRACE, payload=payload)))
    assert batch.events == SAMPLES[:2]
    assert [e.code for e in batch.errors] == ["unknown_event", "garbled"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not msgpack at all", "garbled"),
        (encode(Envelope(kind=Kind.QUERY, payload={"text": "hi"})), "kind"),
        (encode(Envelope(kind=Kind.TRACE, payload={"events": "nope"})), "garbled"),
    ],
)
def test_a_message_that_is_not_a_trace_batch_is_a_typed_error(data: bytes, code: str) -> None:
    with pytest.raises(WireError) as caught:
        decode_trace_message(data)
    assert caught.value.code == code


def test_json_lines_carry_the_tag_and_every_field() -> None:
    line = event_json(SAMPLES[0])
    assert line.startswith('{"event":"llm_call"')
    assert decode_event(msgspec.json.decode(line)) == SAMPLES[0]
