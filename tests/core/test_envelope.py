"""The wire envelope: round trips, and typed rejections of everything else."""

from __future__ import annotations

import os
import random

import msgpack
import pytest

from hieramas.wire import Envelope, Kind, WireError, decode, encode, input_output, new_id
from hieramas.wire.subjects import Subjects


def test_round_trip_keeps_every_field() -> None:
    env = Envelope(
        kind=Kind.NODE_INPUT,
        payload={"node": "critic", "output": {"text": "é" * 10, "n": [1, 2.5, None]}},
        query_id="q1",
        trace_id="t1",
        span_id="s1",
        config_version=7,
        sender="w-1",
    )
    assert decode(encode(env)) == env


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "garbled"),
        (b"\xc1", "garbled"),
        (msgpack.packb([1, 2, 3]), "garbled"),
        (msgpack.packb({"v": 1, "k": "query", "p": {"text": "x"}}) + b"\x00", "garbled"),
        (msgpack.packb({"v": 1, "k": "query", "p": {"text": "x"}})[:-1], "garbled"),
        (msgpack.packb({"v": 2, "k": "query", "p": {"text": "x"}}), "version"),
        (msgpack.packb({"k": "query", "p": {"text": "x"}}), "version"),
        (msgpack.packb({"v": 0, "k": "query", "p": {"text": "x"}}), "version"),
        (msgpack.packb({"v": 1, "k": "nope", "p": {}}), "kind"),
        (msgpack.packb({"v": 1, "k": "query", "p": [1]}), "payload"),
        (msgpack.packb({"v": 1, "k": "query", "p": {}}), "payload"),
        (msgpack.packb({"v": 1, "k": "query", "p": {"text": "x", 7: 1}}), "payload"),
        (msgpack.packb({"v": True, "k": "query", "p": {"text": "x"}}), "version"),
        (msgpack.packb({"v": 1, "k": "query", "p": {"text": "x"}, "c": "seven"}), "header"),
        (msgpack.packb({"v": 1, "k": "query", "p": {"text": "x"}, "q": 5}), "header"),
    ],
)
def test_decode_rejects_with_a_typed_error(data: bytes, code: str) -> None:
    with pytest.raises(WireError) as info:
        decode(data)
    assert info.value.code == code


def test_encode_refuses_oversize() -> None:
    env = Envelope(kind=Kind.QUERY, payload={"text": "x" * 2000})
    with pytest.raises(WireError, match="over the 1000-byte maximum") as info:
        encode(env, max_bytes=1000)
    assert info.value.code == "oversize"


def test_subjects_name_nodes_and_slots() -> None:
    s = Subjects("hx")
    assert s.propose("critic", 2) == "hx.node.critic.propose.2"
    assert Subjects.node_of(s.propose("critic", 2)) == "critic"
    assert Subjects.slot_of(s.propose("critic", 2)) == 2
    assert s.activate("decision") == "hx.decision.activate"
    assert s.trace("llm_call") == "hx.trace.llm_call"
    assert s.propose("critic", 1, "gpu") == "hx.g.gpu.node.critic.propose.1"
    assert Subjects.node_of(s.propose("critic", 1, "gpu")) == "critic"
    assert s.activate("decision", "gpu") == "hx.g.gpu.decision.activate"
    assert s.all_activations("gpu") == "hx.g.gpu.node.*.activate"


def test_new_id_is_16_hex_digits_and_unique() -> None:
    ids = {new_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_new_id_ignores_the_global_random_seed() -> None:
    random.seed(1234)
    first = [new_id() for _ in range(5)]
    random.seed(1234)
    assert [new_id() for _ in range(5)] != first


def test_new_id_differs_in_a_forked_child() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one id and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 16
    assert child != new_id()


def test_input_output_keeps_what_successors_read_and_drops_call_records() -> None:
    output = {
        "node": "critic", "role": "Critic", "status": "ok", "text": "The answer is B.",
        "answer": "B", "answerless": False, "error": None,
        "calls": {"p0": {"model": "m", "latency_s": 0.1}}, "models": {"proposers": ["m"]},
        "cost_usd": 0.01, "worker": "w-1",
    }  # fmt: skip
    view = input_output(output)
    assert view == {
        "node": "critic", "role": "Critic", "status": "ok", "text": "The answer is B.",
        "answer": "B", "answerless": False, "error": None,
    }  # fmt: skip
    assert input_output({"node": "x", "status": "error"}) == {"node": "x", "status": "error"}


def test_encoded_bytes_are_plain_msgpack() -> None:
    """The fast encoder writes exactly what msgpack-python writes, for every type we send."""
    payload = {
        "text": "ünïcödé " * 40,  # str8 / str16 lengths
        "short": "x",
        "ints": [0, 1, -1, 127, 128, -33, 255, 65535, 70000, -70000, 2**40, -(2**40), 2**63],
        "floats": [0.0, -2.5, 1e300, 3.14159],
        "flags": [True, False, None],
        "blob": b"\x00\x01" * 200,
        "pair": ("role", "text"),
        "nested": {"calls": {"p0": {"latency_s": 0.12, "outcome": "ok"}}, "empty": {}},
        "long": list(range(70000)),
    }
    envelope = Envelope(kind=Kind.SLOT_CALL, payload={"slot": "p0@1", "call": payload})
    header = {
        "v": 1, "k": "slot.call", "q": "", "t": "", "s": "", "c": 0, "f": "", "ts": envelope.ts,
        "p": envelope.payload,
    }  # fmt: skip
    assert encode(envelope, max_bytes=1 << 22) == msgpack.packb(header, use_bin_type=True)
    again = decode(encode(envelope, max_bytes=1 << 22))
    assert again.payload["call"]["pair"] == ["role", "text"]  # tuples travel as arrays
    assert again.payload["call"]["blob"] == payload["blob"]
