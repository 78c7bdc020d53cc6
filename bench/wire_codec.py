"""Encode and decode cost of the bus envelope, against msgpack-python in the same run.

Envelopes shaped and sized like the ones a query of ``bench/overhead.py``
sends (a slot call ~0.6 KB, its result ~0.55 KB, a node output ~1.8 KB, the
query result ~15 KB) go through:

* ``hieramas.wire``: ``encode`` and ``decode`` (msgspec: one typed, strict pass);
* the baseline: ``msgpack.packb`` and ``msgpack.unpackb(strict_map_key=True)``
  followed by the same header checks done by hand (the decoder before msgspec).

Both decoders reject trailing bytes; the bytes encoded are identical.  (The
encoder before msgspec was ormsgpack, which costs about what msgspec does; the
encode baseline here is msgpack-python, the reference implementation.)

    python bench/wire_codec.py [--rounds 20000]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import msgpack
import msgspec
import typer

from hieramas.wire import Envelope, Kind, WireError, decode, encode
from hieramas.wire.envelope import _KINDS, SCHEMA_VERSION
from hieramas.wire.events import LlmCall
from hieramas.wire.kinds import REQUIRED_KEYS


def _call_record(slot: str) -> dict[str, Any]:
    """A slot call's ``llm_call`` record, built from the typed event so it keeps its shape."""
    record = LlmCall(
        query_id="9f1c2e3d4b5a6978", trace_id="0a1b2c3d4e5f6071", span_id="1122334455667788",
        config_version=3, node="n3", role="Mathematician", slot=slot, worker="w-5f3a9c1e",
        model="fixed:A", model_id="fixed:A", endpoint="bench", started=1.8e9, finished=1.8e9 + 0.00123,
        outcome="ok", prompt_tokens=312, completion_tokens=18, cost_usd=0.000331, latency_s=0.00123,
    )  # fmt: skip
    return msgspec.to_builtins(record)  # type: ignore[no-any-return]


def _samples() -> dict[str, Envelope]:
    ids = {
        "query_id": "9f1c2e3d4b5a6978",
        "trace_id": "0a1b2c3d4e5f6071",
        "span_id": "1122334455667788",
    }
    model = {"name": "fixed:A", "model": "fixed:A", "endpoint": "bench", "price_in_per_m": 1.0, "price_out_per_m": 1.0}  # fmt: skip
    endpoint = {"name": "bench", "base_url": "http://127.0.0.1:43211/v1", "api_key_env": None, "max_concurrency": 8, "timeout_s": 60.0, "max_retries": 0}  # fmt: skip
    inputs = [{"node": f"n{i}", "role": "Critic", "text": "Let me reason about it. The answer is A."} for i in range(2)]  # fmt: skip
    call = {"role": "Mathematician", "task": "bench question 17", "domain": "mmlu", "model": model, "endpoint": endpoint, "inputs": inputs, "deadline_unix": 1.8e9, "max_tokens": 1024, "temperature": 0.0, "notify": "hx.gw.notify"}  # fmt: skip
    output = {
        "node": "n3", "role": "Mathematician", "status": "ok", "text": "Let me reason about it. The answer is A." * 3,
        "answer": "A", "answerless": False, "error": None, "worker": "w-5f3a9c1e", "cost_usd": 0.0013,
        "calls": {s: _call_record(s) for s in ("p0", "p1", "p2", "synth")},
        "models": {"proposers": ["fixed:A"] * 3, "synthesizer": "fixed:A"},
    }  # fmt: skip
    nodes = {f"n{i}": dict(output, node=f"n{i}") for i in range(8)}
    text = "Let me reason about it. The answer is A."
    result = {"slot": "p1", "status": "ok", "text": text, "call": _call_record("p1")}
    final = {"status": "ok", "answer": "A", "nodes": nodes, "decision": {"answer": "A"}}
    return {
        "slot.call 0.6 KB": Envelope(
            kind=Kind.SLOT_CALL, payload={"slot": "p1", "call": call}, **ids
        ),
        "slot.result 0.55 KB": Envelope(kind=Kind.SLOT_RESULT, payload=result, **ids),
        "node.output 1.8 KB": Envelope(
            kind=Kind.NODE_OUTPUT, payload={"node": "n3", "output": output}, **ids
        ),
        "query.result 15 KB": Envelope(kind=Kind.QUERY_RESULT, payload=final, **ids),
    }


def _baseline_encode(envelope: Envelope) -> bytes:
    return msgpack.packb(
        {
            "v": SCHEMA_VERSION, "k": envelope.kind.value, "q": envelope.query_id,
            "t": envelope.trace_id, "s": envelope.span_id, "c": envelope.config_version,
            "f": envelope.sender, "ts": envelope.ts, "p": envelope.payload,
        },
        use_bin_type=True,
    )  # fmt: skip


def _baseline_decode(data: bytes) -> Envelope:
    """The decoder before msgspec: msgpack-python, then the header checked field by field."""
    raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION:
        raise WireError("version", "bad")
    kind = _KINDS.get(raw.get("k"))
    payload = raw.get("p")
    if kind is None or not isinstance(payload, dict):
        raise WireError("kind", "bad")
    if not REQUIRED_KEYS[kind] <= payload.keys():
        raise WireError("payload", "bad")
    header = [raw.get(key, "") for key in ("q", "t", "s", "f")]
    if not all(isinstance(value, str) for value in header):
        raise WireError("header", "bad")
    version = raw.get("c", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise WireError("header", "bad")
    query_id, trace_id, span_id, sender = header
    return Envelope(
        kind=kind, payload=payload, query_id=query_id, trace_id=trace_id, span_id=span_id,
        config_version=version, sender=sender, ts=float(raw.get("ts") or 0.0),
    )  # fmt: skip


def _per_call_us(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(samples)


def main(rounds: Annotated[int, typer.Option(help="Calls per timing block.")] = 20000) -> None:
    """Print encode/decode µs per envelope for hieramas.wire and the msgpack-python baseline."""
    print("µs per envelope, median of 5 blocks; ratio = baseline / hieramas.wire")
    print(f"{'envelope':22s} {'encode':>8s} {'baseline':>9s} {'ratio':>6s}   {'decode':>8s} {'baseline':>9s} {'ratio':>6s}")  # fmt: skip
    for name, envelope in _samples().items():
        data = encode(envelope)
        assert data == _baseline_encode(envelope)
        assert decode(data) == _baseline_decode(data) == envelope
        n = max(200, rounds * 600 // len(data))
        ours_enc = _per_call_us(partial(encode, envelope), n)
        base_enc = _per_call_us(partial(_baseline_encode, envelope), n)
        ours_dec = _per_call_us(partial(decode, data), n)
        base_dec = _per_call_us(partial(_baseline_decode, data), n)
        print(
            f"{name:22s} {ours_enc:8.2f} {base_enc:9.2f} {base_enc / ours_enc:6.2f}   "
            f"{ours_dec:8.2f} {base_dec:9.2f} {base_dec / ours_dec:6.2f}"
        )


if __name__ == "__main__":
    typer.run(main)
