"""Helpers of the chaos suite: the running cluster, the query stream, the no-hang check and
the trace ledger (probe events checked by their stream sequence)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from nats.js.api import RawStreamMsg

from hieramas.bus import Bus, RemoteError
from hieramas.cluster import Cluster
from hieramas.controller.client import HieraClient
from hieramas.jsretry import retry_transient
from hieramas.loadgen import Outcome, QueryLoad
from hieramas.netlab import NetLab
from hieramas.traces import TRACE_STREAM, ReadStats, read_events
from hieramas.wire import Envelope, Kind, Subjects, new_id
from hieramas.wire.events import Feedback, QueryDone

SUBJECTS = Subjects()
TIMEOUT_S = 20.0  # every query's deadline
SLACK_S = 3.0  # how late past its deadline an answer or error may come (a loaded 2-core box)

CONFIG = yaml.safe_dump(
    {
        "name": "chaos",
        "domain": "mmlu",
        "endpoints": {"emu": {"kind": "emulator"}},
        "llms": {
            "qwen3-8b": {"endpoint": "emu", "price_in": 0.035, "price_out": 0.138},
            "llama-8b": {"endpoint": "emu", "price_in": 0.02, "price_out": 0.03},
        },
        "supernodes": {
            "expert": {
                "role": "Critic",
                "proposers": ["qwen3-8b", "llama-8b"],
                "synthesizer": "qwen3-8b",
            },
            "doctor": {"role": "Doctor", "proposers": ["llama-8b"], "synthesizer": "llama-8b"},
        },
        "edges": [["expert", "doctor"]],
        "decision": "qwen3-8b",
        "limits": {"query_timeout_s": TIMEOUT_S, "node_timeout_s": TIMEOUT_S},
    },
    sort_keys=False,
)


ChaosFactory = Callable[..., "Chaos"]
"""The ``chaos`` fixture: start a cluster (options as for :class:`Cluster`)."""


@dataclass
class Chaos:
    """A running lab and cluster, and clients in the root namespace: ``bus`` with the
    observer's login (the checks), and one bus per component login in ``buses``."""

    lab: NetLab
    cluster: Cluster
    bus: Bus
    buses: dict[str, Bus]

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        """Run ``coro`` on the observer's loop."""
        return self.bus.call(coro, timeout)

    @property
    def client(self) -> HieraClient:
        """A client with the ``client`` login (it may only ask the gateway)."""
        return HieraClient(self.buses["client"], sender="chaos")

    def apply(self, text: str = CONFIG) -> int:
        """Apply a config with the controller's login (the only one that may)."""
        controller = HieraClient(self.buses["controller"], sender="chaos")
        return int(self.buses["controller"].call(controller.apply_config(text, source="chaos"), 30))

    def worker_ids(self) -> dict[str, str]:
        """worker id -> its part name (``worker-<host>``), from each worker's start line."""
        ids: dict[str, str] = {}
        for name in self.cluster.parts:
            if name.startswith("worker-"):
                for line in self.cluster.log_text(name).splitlines():
                    if line.startswith("worker "):
                        ids[line.split()[1]] = name
        return ids


async def on(bus: Bus, coro: Any) -> Any:
    """Await ``coro`` run on ``bus``'s own loop, from another bus's loop."""
    return await asyncio.wrap_future(bus.run(coro))


def assert_no_hang(outcomes: list[Outcome], *, at_least: int = 1) -> None:
    """Every query ended with an answer or an explicit error within its deadline."""
    t0 = min((o.started for o in outcomes), default=0.0)
    timeline = [(round(o.started - t0, 1), round(o.latency_s, 1), o.code) for o in outcomes]
    assert len(outcomes) >= at_least, f"only {len(outcomes)} queries ran: {timeline}"
    hangs = [o for o in outcomes if o.kind in ("hang", "exception")]
    assert not hangs, f"{len(hangs)} of {len(outcomes)} got no answer: {hangs[:3]}"
    late = [o for o in outcomes if o.latency_s > TIMEOUT_S + SLACK_S]
    assert not late, f"{len(late)} ended after their deadline: {late[:3]}"


@dataclass
class TraceLedger:
    """Probe trace events published during a scenario, with the stream sequence each got
    when JetStream accepted it; :meth:`check` then finds every one of them at its sequence."""

    bus: Bus
    acked: dict[int, bytes] = field(default_factory=dict)
    refused: int = 0
    _stop: bool = False

    async def probe(self, every_s: float = 0.05) -> None:
        """Publish probes until :meth:`stop` (a refused or unanswered one is not accepted)."""
        i = 0
        while not self._stop:
            event = Feedback(query_id=f"probe-{i}", span_id=new_id(), score=0.0, source="chaos")
            data = self.bus.encode(
                Envelope(kind=Kind.TRACE, payload={"events": [event]}, sender="chaos-probe")
            )
            try:
                ack = await self.bus.js.publish(SUBJECTS.trace("feedback"), data, timeout=2.0)
                self.acked[int(ack.seq)] = data
            except Exception:
                self.refused += 1
            i += 1
            await asyncio.sleep(every_s)

    def stop(self) -> None:
        self._stop = True

    async def check(self, timeout: float = 45.0) -> dict[str, int]:
        """Wait until every replica is current, then: sequences have no gap, and every
        accepted probe is stored at its sequence with its bytes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                info = await self.bus.js.stream_info(TRACE_STREAM)
                replicas = (info.cluster.replicas or []) if info.cluster else []
                if (
                    info.cluster
                    and info.cluster.leader
                    and len(replicas) == 2
                    and all(r.current for r in replicas)
                ):
                    break
            except Exception:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"the trace stream's replicas did not catch up: {info}")
            await asyncio.sleep(0.5)
        assert info.config.num_replicas == 3
        state = info.state
        assert state.messages == state.last_seq - state.first_seq + 1, state
        assert len(self.acked) > 0, "no probe was accepted"
        for seq, data in self.acked.items():
            msg = await self._get_msg(seq)
            assert msg.data == data, f"stream seq {seq} does not hold the probe accepted there"
        return {"probes": len(self.acked), "refused": self.refused, "messages": state.messages}

    async def _get_msg(self, seq: int) -> RawStreamMsg:
        """A stream message, through what the cluster shows while it settles after a fault
        (a healed server's stream leader or meta leader answers 503 for a moment)."""
        return await retry_transient(
            lambda: self.bus.js.get_msg(TRACE_STREAM, seq), bus=self.bus, what="get_msg"
        )

    async def query_ids(self) -> set[str]:
        """The ids of every ``query`` event in the stream."""
        info = await retry_transient(
            lambda: self.bus.js.stream_info(TRACE_STREAM), bus=self.bus, what="stream_info"
        )
        found: set[str] = set()
        stats = ReadStats()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self._get_msg(seq)
            for event in read_events(msg.data or b"", stats, seq=seq):
                if isinstance(event, QueryDone):
                    found.add(event.query_id)
        return found


async def scenario(
    c: Chaos,
    fault: Callable[[QueryLoad], Any],
    *,
    clients: int = 4,
    duration_s: float = 14.0,
    fault_at_s: float = 3.0,
) -> tuple[QueryLoad, TraceLedger]:
    """Run a query stream and probes for ``duration_s``; call ``fault(load)`` (a coroutine
    function, run on the loop) ``fault_at_s`` in."""
    load = QueryLoad(c.buses["client"], clients=clients, timeout_s=TIMEOUT_S)
    ledger = TraceLedger(c.bus)
    probing = asyncio.ensure_future(ledger.probe())

    async def later() -> None:
        await asyncio.sleep(fault_at_s)
        await fault(load)

    try:
        await asyncio.gather(on(load.bus, load.run(duration_s=duration_s)), later())
    finally:
        ledger.stop()
        await probing
    return load, ledger


async def request_inbox(bus: Bus, inbox: str, timeout: float = 5.0) -> str:
    """Ask a worker's private inbox something it refuses: its error code proves it is
    reachable from here (``no reply`` if it is not)."""
    try:
        await bus.arequest(inbox, Envelope(kind=Kind.QUERY, payload={"text": "ping"}), timeout)
    except RemoteError as exc:
        return exc.code
    except Exception as exc:
        return f"no reply: {type(exc).__name__}"
    return "answered"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
