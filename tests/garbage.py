"""A garbage storm: right-kind messages with wrong fields, made-up node and slot names, versions
nobody applied, forged bookkeeping.  Shared by tests/actors/test_storm.py and
bench/garbage_storm.py (which runs it against an older worker too)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from hieramas.bus import Bus, RemoteError
from hieramas.wire import Envelope, Kind, Subjects

SUBJECTS = Subjects()


def _call(node: str, llm: Any = "fixed:A") -> dict[str, Any]:
    return {
        "kind": "propose", "node": node, "role": "Critic", "domain": "mmlu", "task": "t",
        "llm": llm, "deadline_unix": time.time() + 30,
        # what an older sender (or a forger) puts in: records the worker must not trust
        "model": {"name": "x", "model_id": "x", "endpoint": "x"},
        "endpoint": {"name": "x", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "HOME"},
    }  # fmt: skip


def garbage(i: int, worker_inbox: str, gateway_inbox: str) -> tuple[str, Envelope]:
    """The ``i``-th message of a storm, and where it goes."""
    q = f"g{i}"
    match i % 10:
        case 0:  # the case: a fresh node and slot name every time
            subject = SUBJECTS.propose(f"n{i}", i % 997)
            return subject, _envelope(
                Kind.SLOT_CALL, {"slot": f"p{i % 997}@1", "call": _call(f"n{i}")}, q
            )
        case 1:  # a real node, slots it does not have
            return SUBJECTS.propose("expert", 0), _envelope(
                Kind.SLOT_CALL,
                {"slot": f"p{100 + i % 900}@{i % 50 + 1}", "call": _call("expert")},
                q,
            )
        case 2:  # wrong field types
            return SUBJECTS.propose("expert", 0), _envelope(
                Kind.SLOT_CALL, {"slot": "p0@1", "call": _call("expert", llm={"x": i})}, q
            )
        case 3:  # config versions nobody applied
            return SUBJECTS.synthesize(f"s{i}"), _envelope(
                Kind.SLOT_CALL,
                {"slot": "synth@1", "call": {**_call(f"s{i}"), "kind": "synthesize"}},
                q,
                1000 + i,
            )
        case 4:  # activations of made-up nodes
            return SUBJECTS.activate(f"a{i}"), _envelope(
                Kind.NODE_ACTIVATE,
                {"plan": {"nodes": {f"a{i}": i}}, "node": f"a{i}", "gateway": "hm.gwi.x"},
                q,
            )
        case 5:  # routes and inputs for queries that do not exist
            return worker_inbox, _envelope(
                Kind.NODE_ROUTES,
                {"node": f"r{i}", "nodes": [f"r{i}"], "routes": {f"r{i}": "hm.inst.x"}},
                q,
            )
        case 6:
            return worker_inbox, _envelope(
                Kind.NODE_INPUT, {"node": "expert", "output": {"node": f"i{i}", "status": [i]}}, q
            )
        case 7:  # forged bookkeeping
            return worker_inbox, _envelope(
                Kind.SLOT_ACCEPTED, {"node": "expert", "slot": "p0@1", "worker": f"w-fake{i}"}, q
            )
        case 8:
            return gateway_inbox, _envelope(
                Kind.NODE_OUTPUT, {"output": {"node": f"o{i}", "status": "ok", "text": "x" * 64}}, q
            )
        case _:
            return SUBJECTS.worker_hello, _envelope(
                Kind.WORKER_HELLO, {"worker": i, "nodes": [i]}, q
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _envelope(kind: Kind, payload: dict[str, Any], query_id: str, version: int = 1) -> Envelope:
    return Envelope(kind=kind, payload=payload, query_id=query_id, config_version=version)


async def storm(
    bus: Bus, count: int, worker_inbox: str, gateway_inbox: str, start: int = 0
) -> None:
    """Publish ``count`` garbage messages, then wait until the worker has read them all (a
    request on its inbox after them is answered in order)."""
    for i in range(start, start + count):
        subject, envelope = garbage(i, worker_inbox, gateway_inbox)
        await bus.apublish(subject, envelope)
        if i % 1000 == 0:
            await bus.nc.flush()
    await bus.nc.flush()
    marker = Envelope(kind=Kind.QUERY, payload={"text": "sync"})
    with contextlib.suppress(RemoteError):  # the worker's error reply to it is the sync
        await bus.arequest(worker_inbox, marker, 60)


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
