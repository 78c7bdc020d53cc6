"""Fuzz: the wire decoder and every message handler take any input without crashing.

Generated messages (random bytes; random maps; and mostly valid messages of each kind with one
field deleted, replaced by a random value of any type, or mutated deeper) are decoded with
:func:`hieramas.wire.decode` and handed to the handler of every subscription a worker and a
controller have, on a real stack (nats-server, controller, worker, the scripted LLM server).
Nothing may raise but :class:`WireError` from the decoder; handlers may raise nothing; no
actor may die.

The normal run handles 2,000 messages; ``test_fuzz_full`` (marked ``slow``, so part of CI)
handles 100,000.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hieramas.controller.config import parse_config
from hieramas.controller.planner import PlanRequest, StaticPlanner, build_plan
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind, WireError, decode
from support import apply_config, ask, config_yaml, node

Handler = Callable[[Envelope, str | None], None]
NODES = {
    "expert": node("Critic", ["fixed:A", "fixed:B"], "fixed:A"),
    "doctor": node("Doctor", ["fixed:A"], "vote"),
}


@pytest.fixture(scope="module")
def fuzzed(llm_url: str) -> Iterator[tuple[Stack, dict[str, Handler], dict[Kind, Any]]]:
    with NatsServer() as server, Stack(nats_url=server.url) as stack:
        cfg = config_yaml(llm_url, NODES, [("expert", "doctor")], query_timeout_s=5)
        apply_config(stack, cfg)
        assert ask(stack)["status"] == "ok"
        assert stack.controller is not None
        controller, gateway, worker = stack.controller, stack.controller.gateway, stack.workers[0]
        handlers: dict[str, Handler] = {
            "activate": worker._on_activate,
            "propose": worker._on_propose,
            "synthesize": worker._on_synth,
            "worker_inbox": worker._on_inbox,
            "worker_hello": worker.liveness._on_hello,
            "controller_hello": controller.liveness._on_hello,
            "gateway_inbox": gateway._on_inbox,
            "query": gateway._on_query,
            "config_apply": controller._handler("apply", Kind.CONFIG_APPLY, controller._apply),
            "config_get": controller._handler("get", Kind.CONFIG_GET, controller._get),
            "config_history": controller._handler(
                "history", Kind.CONFIG_HISTORY, controller._history
            ),
        }
        yield stack, handlers, _templates(cfg, worker.ctx.inbox, gateway.inbox)


def _templates(cfg: str, worker_inbox: str, gateway_inbox: str) -> dict[Kind, Any]:
    """A valid payload of every kind (what the mutations start from)."""
    config = parse_config(cfg)
    plan = build_plan(
        config, 1, StaticPlanner().assign(config, PlanRequest("q")), query_id="fz", task_text="q"
    ).to_wire()
    call = {
        "kind": "propose", "node": "expert", "role": "Critic", "domain": "mmlu", "task": "q",
        "predecessors": [["Doctor", "B"]], "proposals": [], "llm": "fixed:A",
        "max_tokens": 16, "temperature": 0.0, "deadline_unix": time.time() + 5,
        "notify": worker_inbox, "seed": None,
    }  # fmt: skip
    output = {
        "node": "expert", "role": "Critic", "status": "ok", "text": "A", "answer": "A",
        "answerless": False, "error": None, "failures": [], "calls": {"p0": {"outcome": "ok"}},
        "models": {"proposers": ["fixed:A", None], "synthesizer": "fixed:A"}, "cost_usd": 0.0,
    }  # fmt: skip
    llm_call = {
        "event": "llm_call", "query_id": "fz", "config_version": 1, "node": "expert",
        "role": "Critic", "slot": "p0", "worker": "w-x", "model": "fixed:A",
        "model_id": "fixed:A", "endpoint": "scripted", "started": 1.0, "finished": 2.0,
        "outcome": "ok",
    }  # fmt: skip
    return {
        Kind.NODE_ACTIVATE: {"plan": plan, "node": "expert", "nodes": ["expert", "doctor", "decision"], "gateway": gateway_inbox},
        Kind.NODE_ARMED: {"node": "expert", "nodes": ["expert"], "inbox": worker_inbox, "worker": "w-x", "started": False},
        Kind.NODE_ROUTES: {"node": "expert", "nodes": ["expert"], "routes": {"expert": worker_inbox, "doctor": worker_inbox, "decision": worker_inbox}},
        Kind.NODE_INPUT: {"node": "doctor", "nodes": ["doctor"], "output": output},
        Kind.NODE_OUTPUT: {"output": output},
        Kind.NODE_PROBE: {"node": "doctor", "routes": {"expert": worker_inbox, "doctor": worker_inbox}, "round": 1},
        Kind.NODE_STATE: {"node": "doctor", "state": "waiting", "missing": ["expert"]},
        Kind.SLOT_CALL: {"slot": "p0@1", "call": call},
        Kind.SLOT_RESULT: {"slot": "p0@1", "status": "ok", "call": llm_call, "text": "A"},
        Kind.SLOT_ACCEPTED: {"node": "expert", "slot": "p0@1", "worker": "w-x"},
        Kind.WORKER_HELLO: {"status": "alive", "worker": "w-x", "nodes": ["*"], "group": None, "inbox": worker_inbox},
        Kind.QUERY: {"text": "Which option?", "timeout_s": 2, "domain": "mmlu", "item_id": "i", "explore": False},
        Kind.QUERY_RESULT: {"status": "ok"},
        Kind.CONFIG_APPLY: {"yaml": cfg, "source": "fuzz"},
        Kind.CONFIG_GET: {"version": 1},
        Kind.CONFIG_HISTORY: {},
        Kind.CONFIG_REPLY: {"status": "ok"},
        Kind.TRACE: {"events": [llm_call]},
        Kind.ERROR: {"code": "x", "message": "y"},
    }  # fmt: skip


KINDS_OF = {
    "activate": Kind.NODE_ACTIVATE, "propose": Kind.SLOT_CALL, "synthesize": Kind.SLOT_CALL,
    "worker_hello": Kind.WORKER_HELLO, "controller_hello": Kind.WORKER_HELLO,
    "gateway_inbox": Kind.NODE_OUTPUT, "query": Kind.QUERY, "config_apply": Kind.CONFIG_APPLY,
    "config_get": Kind.CONFIG_GET, "config_history": Kind.CONFIG_HISTORY,
}  # fmt: skip
INBOX_KINDS = [Kind.NODE_ROUTES, Kind.NODE_INPUT, Kind.SLOT_ACCEPTED, Kind.NODE_PROBE]
NOW = time.time()  # fixed: generated data must not depend on when it is drawn

scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=12)
)  # fmt: skip
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
"""Any msgpack value (for the decoder's own fuzz)."""

_SPECIAL_FLOATS = [float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 5e-324]
_SPECIAL_INTS = [0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]
_ALPHABET = "aA0_-.*> $\u00e9\u4e2d\U0001f600\x00\n"


def junk_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack value of any type (nested up to 3 deep)."""
    pick = rng.randrange(10 if depth < 3 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice(_SPECIAL_INTS) if rng.random() < 0.5 else rng.randint(-1000, 1000)
    if pick == 3:
        return rng.choice(_SPECIAL_FLOATS) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6)
    if pick in (4, 5):
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(12)))
    if pick == 6:
        return rng.randbytes(rng.randrange(12))
    if pick in (7, 8):
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(junk_value(rng, 3)): junk_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def mutated(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one change somewhere inside it: a field deleted, added, or replaced by a
    random value of any type, at any depth."""
    if isinstance(value, dict) and value and depth < 5:
        key = rng.choice(sorted(value))
        action = rng.choice(["replace", "deeper", "deeper", "delete", "add"])
        out = dict(value)
        if action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = junk_value(rng)
        elif action == "add":
            out[str(junk_value(rng, 3))] = junk_value(rng)
        else:
            out[key] = mutated(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 5 and rng.random() < 0.5:
        index = rng.randrange(len(value))
        out_list = list(value)
        out_list[index] = mutated(rng, value[index], depth + 1)
        return out_list
    return junk_value(rng)


def message(rng: random.Random, templates: dict[Kind, Any]) -> tuple[str, bytes]:
    """One generated message: (the handler it goes to, the bytes that arrive)."""
    target = rng.choice([*KINDS_OF, "worker_inbox"])
    if rng.randrange(20) == 0:
        return target, rng.randbytes(rng.randrange(64))  # not even msgpack
    right = rng.choice(INBOX_KINDS) if target == "worker_inbox" else KINDS_OF[target]
    kind = right if rng.randrange(10) else rng.choice(list(Kind))
    if rng.randrange(10) == 0:
        payload = {str(junk_value(rng, 3)): junk_value(rng) for _ in range(rng.randrange(5))}
    else:
        payload = mutated(rng, templates[kind])
    header: dict[str, Any] = {
        "v": 1, "k": kind.value, "p": payload, "t": "", "s": "",
        "q": rng.choice(["", "fz", "q1", str(junk_value(rng, 3))]),
        "f": rng.choice(["", "w-x", "intruder"]),
        "c": rng.choice([0, 1, 1, 1, 2, -1, 10**12, rng.randint(-(2**63), 2**63 - 1)]),
        "ts": rng.choice([NOW, 0.0, junk_value(rng, 3)]),
    }  # fmt: skip
    if rng.randrange(10) == 0:
        header = mutated(rng, header)
    return target, msgspec.msgpack.encode(header)


def _run(stack: Stack, handlers: dict[str, Handler], batch: list[tuple[str, bytes]]) -> int:
    """Decode and handle ``batch`` on the bus loop, as a subscription would; how many."""
    assert stack.bus is not None

    async def handle() -> int:
        for n, (target, data) in enumerate(batch):
            try:
                envelope = decode(data)
            except WireError:
                continue
            handlers[target](envelope, f"_FUZZ.{n}" if n % 2 else None)
        return len(batch)

    handled: int = stack.bus.call(handle(), 60)
    return handled


def _fuzz(
    fuzzed: tuple[Stack, dict[str, Handler], dict[Kind, Any]], examples: int, size: int
) -> int:
    """Run ``examples`` batches of ``size`` messages (hypothesis draws each batch's seed; the
    messages come from a PRNG seeded with it, so a batch costs microseconds to generate)."""
    stack, handlers, templates = fuzzed
    total = [0]

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.integers(0, 2**64 - 1))
    def run(seed: int) -> None:
        rng = random.Random(seed)
        total[0] += _run(stack, handlers, [message(rng, templates) for _ in range(size)])

    run()
    time.sleep(1.0)  # let what the messages started (calls, loads, queries) finish
    assert stack.bus is not None
    counters = stack.bus.counters
    for bad in (
        "actor.crashed", "rejected.internal", "bus.callback_failed", "coroutine_failed",
        "gateway.failed.internal", "configs.callback_failed", "config.failed.internal",
    ):  # fmt: skip
        assert counters[bad] == 0, (bad, counters[bad])
    assert all(ref.is_alive() for ref in stack.workers[0]._actors.values())
    assert ask(stack)["status"] == "ok"  # and everything still serves
    return total[0]


def test_fuzz(fuzzed: tuple[Stack, dict[str, Handler], dict[Kind, Any]]) -> None:
    assert _fuzz(fuzzed, examples=20, size=100) == 2_000


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_full(fuzzed: tuple[Stack, dict[str, Handler], dict[Kind, Any]]) -> None:
    handled = _fuzz(fuzzed, examples=500, size=200)
    print(f"fuzz: {handled:,} generated messages, no crash")
    assert handled >= 100_000


@given(st.binary(max_size=256) | st.builds(msgspec.msgpack.encode, junk))
@settings(max_examples=1_000, deadline=None, database=None)
def test_the_decoder_raises_only_wire_errors(data: bytes) -> None:
    try:
        decode(data)
    except WireError as exc:
        assert exc.code in {"garbled", "version", "kind", "payload", "header"}
