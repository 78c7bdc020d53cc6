"""A garbage storm on every subject of the 3-host cluster while it answers a query stream:
made-up names, wrong field types on right-kind messages, forged bookkeeping, raw bytes in
the trace stream.  Nothing crashes, memory stays flat, every query still ends by its deadline,
and a trace reader skips what is bad."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from chaos_support import SUBJECTS, ChaosFactory, assert_no_hang, on, scenario
from garbage import storm

from hieramas.bus import BusError, RemoteError
from hieramas.loadgen import QueryLoad
from hieramas.wire import Envelope, Kind

WRONG_TYPES: list[tuple[str, Kind, dict[str, Any]]] = [
    (SUBJECTS.query, Kind.QUERY, {"text": 42, "timeout_s": "soon"}),
    (SUBJECTS.query, Kind.QUERY, {"text": ["a"], "domain": {"x": 1}}),
    (SUBJECTS.query, Kind.QUERY, {"text": "q", "timeout_s": -1e300, "config_version": "v9"}),
    (SUBJECTS.config("get"), Kind.CONFIG_GET, {"version": "latest"}),
    (SUBJECTS.config("apply"), Kind.CONFIG_APPLY, {"yaml": {"name": 1}, "source": 3}),
    (SUBJECTS.config("get"), Kind.CONFIG_GET, {"version": [1]}),
]


async def _gateway_inboxes(c: Any) -> list[str]:
    """The controllers' private inboxes, seen as workers answer them."""
    seen: set[str] = set()

    async def note(msg: Any) -> None:
        seen.add(msg.subject)

    sub = await c.bus.nc.subscribe("hm.gwi.*", cb=note)
    client = c.buses["client"]
    await on(client, QueryLoad(client, clients=4).run(queries=12))
    await sub.unsubscribe()
    return sorted(seen)


def test_garbage_storm_on_every_subject(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()
    workers = {name: f"hm.inst.{wid}" for wid, name in c.worker_ids().items()}
    gateways = c.run(_gateway_inboxes(c))
    assert gateways, "no gateway inbox seen"
    replies: dict[str, int] = {}
    before = c.cluster.rss()

    async def storm_everywhere(load: QueryLoad) -> None:
        attacker = c.buses["worker"]  # a worker's login: it may publish on every runtime subject
        for i, inbox in enumerate(sorted(workers.values())):
            gateway = gateways[i % len(gateways)]
            await on(attacker, storm(attacker, 3000, inbox, gateway, start=i * 3000))
        for _ in range(50):  # right kinds, wrong types: each is answered with a typed error
            for j, (subject, kind, payload) in enumerate(WRONG_TYPES):
                # each sent with the login allowed to send it: a client asks, a controller configures
                sender = c.buses["client" if kind is Kind.QUERY else "controller"]
                request = sender.arequest(subject, Envelope(kind=kind, payload=payload), 5.0)
                try:
                    reply = await on(sender, request)
                    status = reply.payload.get("status")  # a query's failure is a result
                    code = str(status) if status not in (None, "ok") else f"accepted {j}"
                except RemoteError as exc:
                    code = exc.code
                except BusError as exc:
                    code = f"bus.{exc.code}"
                replies[code] = replies.get(code, 0) + 1
        for k in range(20):  # raw bytes into the trace stream: stored, and skipped by readers
            garbage = attacker.js.publish(SUBJECTS.trace("llm_call"), b"\xc1not msgpack %d" % k)
            await on(attacker, garbage)

    load, ledger = c.run(scenario(c, storm_everywhere, duration_s=20.0, fault_at_s=2.0), 180)
    after = c.cluster.rss()
    assert_no_hang(load.outcomes, at_least=20)
    assert load.kinds()["answer"] == len(load.outcomes), load.codes()
    dead = [name for name, part in c.cluster.parts.items() if not part.alive()]
    assert not dead, f"died under the storm: {dead}"
    assert not any(k.startswith("accepted") for k in replies) and not any(
        k.startswith("bus.") for k in replies
    ), replies
    for name in workers:
        assert after[name] - before[name] < 30, (name, before[name], after[name])
    report = c.run(ledger.check())
    tail = subprocess.run(
        [sys.executable, "-m", "hieramas", "traces", "tail", "--last", "100000"],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={**c.cluster.role_env("learner"), "HIERAMAS_NATS_URL": c.cluster.client_url},
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr[-2000:]
    assert "skipped" in tail.stderr, tail.stderr[-2000:]
    growth = {n: round(after[n] - before[n], 1) for n in sorted(after)}
    print(f"storm: {dict(load.codes())} replies {replies} {report} RSS growth MB {growth}")
