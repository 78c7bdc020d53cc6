"""The runtime's message records: one definition per kind, checked at the edge."""

from __future__ import annotations

import time

import msgspec
import pytest

from hieramas.controller.config import parse_config
from hieramas.controller.planner import PlanRequest, StaticPlanner, build_plan
from hieramas.wire import Envelope, Kind, WireError, decode, encode
from hieramas.wire.events import LlmCall, NodeModels
from hieramas.wire.kinds import INPUT_OUTPUT_KEYS, REQUIRED_KEYS, input_output
from hieramas.wire.messages import (
    PAYLOADS,
    NodeActivate,
    NodeArmed,
    NodeInput,
    NodeOutput,
    NodeOutputRecord,
    NodeRoutes,
    SlotAccepted,
    SlotCall,
    SlotCallSpec,
    SlotResult,
    WorkerHello,
    payload,
    read,
    split_slot,
)
from support import config_yaml, node


def test_the_envelope_check_asks_for_exactly_each_records_required_fields() -> None:
    for kind, record in PAYLOADS.items():
        required = {
            name
            for name, field in zip(
                record.__struct_fields__, msgspec.structs.fields(record), strict=True
            )
            if field.required
        }
        assert REQUIRED_KEYS[kind] == required, kind


def _plan() -> object:
    config = parse_config(config_yaml("http://h/v1", {"a": node("Critic", ["fixed:A"], "fixed:A")}))
    return build_plan(
        config, 2, StaticPlanner().assign(config, PlanRequest("q")), query_id="q", task_text="q"
    )


def _call() -> LlmCall:
    return LlmCall(
        query_id="q", config_version=2, node="a", role="Critic", slot="p0", worker="w-1",
        model="m", model_id="m", endpoint="ep", started=1.0, finished=2.0, outcome="ok",
    )  # fmt: skip


def _records() -> list[tuple[Kind, object]]:
    output = NodeOutputRecord(
        node="a", role="Critic", status="ok", text="A", answer="A", calls={"p0": {"x": 1}},
        models=NodeModels(proposers=["m", None], synthesizer="m"), call=_call(),
    )  # fmt: skip
    spec = SlotCallSpec(
        kind="propose", node="a", role="Critic", domain="mmlu", task="t",
        predecessors=[("Doctor", "B")], llm="m", deadline_unix=time.time(), notify="hm.inst.w-1",
    )  # fmt: skip
    return [
        (Kind.NODE_ACTIVATE, NodeActivate(plan=_plan(), node="a", nodes=["a"], gateway="hm.gwi.g")),  # type: ignore[arg-type]
        (Kind.NODE_ARMED, NodeArmed(node="a", nodes=["a"], inbox="hm.inst.w-1", worker="w-1")),
        (Kind.NODE_ROUTES, NodeRoutes(node="a", routes={"a": "hm.inst.w-1"})),
        (Kind.NODE_INPUT, NodeInput(node="a", output=output.as_input())),
        (Kind.NODE_OUTPUT, NodeOutput(output=output)),
        (Kind.SLOT_CALL, SlotCall(slot="p0@1", call=spec)),
        (Kind.SLOT_RESULT, SlotResult(slot="p0@1", status="ok", call=_call(), text="A")),
        (Kind.SLOT_ACCEPTED, SlotAccepted(node="a", slot="synth@2", worker="w-1")),
        (Kind.WORKER_HELLO, WorkerHello(worker="w-1", nodes=["*"])),
    ]


@pytest.mark.parametrize(("kind", "record"), _records(), ids=lambda x: getattr(x, "value", ""))
def test_every_record_survives_the_wire(kind: Kind, record: object) -> None:
    envelope = decode(encode(Envelope(kind=kind, payload=payload(record))))  # type: ignore[arg-type]
    assert read(envelope, type(record)) == record  # type: ignore[type-var]


def test_a_node_input_carries_the_input_keys_only() -> None:
    full = {"node": "a", "status": "ok", "text": "A", "cost_usd": 1.0, "calls": {"p0": {}}}
    record = NodeOutputRecord(node="a", status="ok", text="A", cost_usd=1.0)
    assert set(msgspec.structs.asdict(record.as_input())) >= set(INPUT_OUTPUT_KEYS)
    assert record.as_input().cost_usd == 0.0
    assert set(input_output(full)) <= set(INPUT_OUTPUT_KEYS)


@pytest.mark.parametrize(
    ("record", "data", "where"),
    [
        (NodeRoutes, {"node": "a", "routes": "x"}, "$.routes"),
        (NodeRoutes, {"node": ["a"], "routes": {}}, "$.node"),
        (NodeInput, {"node": "a", "output": {"node": "a", "status": "maybe"}}, "$.output.status"),
        (SlotCall, {"slot": 0, "call": {}}, "$.slot"),
        (SlotAccepted, {"node": "a", "slot": "p0@1", "worker": None}, "$.worker"),
        (NodeArmed, {"node": "a", "nodes": [], "inbox": 5, "worker": "w"}, "$.inbox"),
    ],
)
def test_a_bad_field_is_a_payload_error_naming_it(
    record: type, data: dict[str, object], where: str
) -> None:
    kind = next(k for k, r in PAYLOADS.items() if r is record)
    with pytest.raises(WireError) as info:
        read(Envelope(kind=kind, payload=data), record)
    assert info.value.code == "payload" and where in str(info.value)


@pytest.mark.parametrize(
    "tag", ["p0", "p@1", "px@1", "synth", "synth@", "p0@x", "p12345@1", "q0@1", "p0@1@2", "p-1@1"]
)
def test_split_slot_refuses_anything_but_a_slot_tag(tag: str) -> None:
    with pytest.raises(ValueError, match="is not a slot tag"):
        split_slot(tag)


def test_split_slot_reads_a_tag() -> None:
    assert split_slot("p0@2") == ("p0", 2)
    assert split_slot("synth@1") == ("synth", 1)


def test_unknown_extra_fields_are_ignored() -> None:
    data = {"node": "a", "routes": {"a": "hm.inst.w"}, "added_later": [1, 2]}
    assert read(Envelope(kind=Kind.NODE_ROUTES, payload=data), NodeRoutes).routes == {
        "a": "hm.inst.w"
    }
