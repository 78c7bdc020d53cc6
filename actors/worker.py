"""A worker process's actor host: subscriptions, lazily started actors, announcements.

``Worker(nodes=None)`` serves every node of any config (wildcard
subscriptions); a set of node ids serves only those.  ``group`` joins a worker
group: the worker then serves only nodes that a config's ``placement`` puts in
that group (their subjects live under ``<prefix>.g.<group>``), and ungrouped
workers never see them.  Node activations and
slot calls use NATS queue groups, so every extra worker adds capacity and a
worker that dies simply stops receiving new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pykka
import structlog

from hieramas.actors.context import WorkerContext
from hieramas.actors.decision import DecisionActor
from hieramas.actors.messages import Arm, Inbound
from hieramas.actors.slot import ProposerActor, SynthesizerActor
from hieramas.actors.supernode import SupernodeActor
from hieramas.actors.tracking import SlotCallTracker
from hieramas.bus import Bus
from hieramas.controller.plan import Plan
from hieramas.liveness import HEARTBEAT_S, Liveness
from hieramas.llm.types import ChatClient
from hieramas.traces import TraceEmitter
from hieramas.wire import Envelope, Kind, Subjects, new_id
from hieramas.wire.subjects import DECISION_NODE

__all__ = ["NODE_QUEUE", "SLOT_QUEUE", "Worker"]

log = structlog.get_logger(__name__)

NODE_QUEUE = "hm-nodes"
SLOT_QUEUE = "hm-slots"
START_AT_ONCE_WITHIN_S = 2.0
"""A worker that armed a whole query starts it at once only if the activation is this fresh.
Older than that, the gateway (which gives up on an arming reply after 5 s and asks another
worker) may already have moved on; the nodes then wait for routes, which never come if it did."""


class Worker:
    """Hosts supernode, proposer, synthesizer and decision actors for one process."""

    def __init__(
        self,
        bus: Bus,
        llm: ChatClient,
        *,
        subjects: Subjects | None = None,
        nodes: set[str] | None = None,
        group: str | None = None,
        worker_id: str | None = None,
        traces: TraceEmitter | None = None,
        hello_interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.subjects = subjects or Subjects()
        self.nodes = nodes
        self.group = group
        self.ctx = WorkerContext(
            bus=bus,
            subjects=self.subjects,
            llm=llm,
            traces=traces or TraceEmitter(bus, self.subjects),
            worker_id=worker_id or f"w-{new_id()[:8]}",
            tracker=SlotCallTracker(bus),
        )
        self._own_traces = traces is None
        self._actors: dict[tuple[str, str], pykka.ActorRef[Any]] = {}
        self._lock = threading.Lock()
        self._subs: list[Any] = []
        self._hello_interval_s = hello_interval_s
        self._hello_task: asyncio.Task[None] | None = None
        self.liveness = Liveness(bus, self.subjects)
        self.liveness.on_lost(self._on_worker_lost)

    @property
    def worker_id(self) -> str:
        return self.ctx.worker_id

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Worker:
        """Subscribe and announce; returns once subscriptions are live on the server."""
        if self._own_traces:
            self.ctx.traces.start()
        self.ctx.bus.call(self._subscribe_all(), timeout=10)
        log.info(
            "worker.started",
            worker=self.worker_id,
            group=self.group,
            nodes=sorted(self.nodes or {"*"}),
        )
        return self

    def stop(self) -> None:
        """Unsubscribe (in-flight work is abandoned) and stop every actor."""
        try:
            self.ctx.bus.call(self._unsubscribe_all(), timeout=10)
        except Exception as exc:
            log.warning("worker.unsubscribe_failed", error=str(exc))
        with self._lock:
            refs = list(self._actors.values())
            self._actors.clear()
        for ref in refs:
            ref.stop(block=False)
        log.info("worker.stopped", worker=self.worker_id)

    async def _subscribe_all(self) -> None:
        bus, s, g = self.ctx.bus, self.subjects, self.group
        await self.liveness.start()
        subs = [await bus.asubscribe(self.ctx.inbox, self._on_inbox)]
        if self.nodes is None:
            subs.append(
                await bus.asubscribe(s.all_activations(g), self._on_activate, queue=NODE_QUEUE)
            )
            subs.append(
                await bus.asubscribe(s.all_proposers(g), self._on_propose, queue=SLOT_QUEUE)
            )
            subs.append(
                await bus.asubscribe(s.all_synthesizers(g), self._on_synth, queue=SLOT_QUEUE)
            )
            hosts_decision = True
        else:
            for node in sorted(self.nodes - {DECISION_NODE}):
                subs.append(
                    await bus.asubscribe(s.activate(node, g), self._on_activate, queue=NODE_QUEUE)
                )
                subs.append(
                    await bus.asubscribe(
                        s.propose(node, "*", g), self._on_propose, queue=SLOT_QUEUE
                    )
                )
                subs.append(
                    await bus.asubscribe(s.synthesize(node, g), self._on_synth, queue=SLOT_QUEUE)
                )
            hosts_decision = DECISION_NODE in self.nodes
        if hosts_decision:
            subs.append(
                await bus.asubscribe(
                    s.activate(DECISION_NODE, g), self._on_activate, queue=NODE_QUEUE
                )
            )
        self._subs = subs
        await bus.nc.flush()
        await self._hello()
        self._hello_task = asyncio.get_running_loop().create_task(self._hello_loop())

    async def _unsubscribe_all(self) -> None:
        if self._hello_task is not None:
            self._hello_task.cancel()
        await self.liveness.stop()
        with contextlib.suppress(Exception):
            await self._hello(status="bye")
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await sub.unsubscribe()
        self._subs = []
        if self._own_traces:
            await self.ctx.traces.flush(timeout=2.0)

    async def _hello(self, status: str = "alive") -> None:
        payload = {
            "status": status,
            "worker": self.worker_id,
            "nodes": sorted(self.nodes) if self.nodes is not None else ["*"],
            "group": self.group,
            "inbox": self.ctx.inbox,
        }
        envelope = Envelope(kind=Kind.WORKER_HELLO, payload=payload, sender=self.worker_id)
        await self.ctx.bus.apublish(self.subjects.worker_hello, envelope)

    async def _hello_loop(self) -> None:
        while True:
            await asyncio.sleep(self._hello_interval_s)
            try:
                await self._hello()
            except Exception as exc:
                log.warning("worker.hello_failed", error=str(exc))

    # -- dispatch (these run on the bus loop) ----------------------------------------
    def _actor(self, key: tuple[str, str]) -> pykka.ActorRef[Any]:
        with self._lock:
            ref = self._actors.get(key)
            if ref is None or not ref.is_alive():
                kind, node, slot = key[0], key[1].split("/")[0], key[1].partition("/")[2]
                if kind == "supernode":
                    ref = SupernodeActor.start(self.ctx, node)
                elif kind == "decision":
                    ref = DecisionActor.start(self.ctx, DECISION_NODE)
                elif kind == "proposer":
                    ref = ProposerActor.start(self.ctx, node, slot)
                else:
                    ref = SynthesizerActor.start(self.ctx, node, "synth")
                self._actors[key] = ref
            return ref

    def _expect(self, envelope: Envelope, reply: str | None, kind: Kind, subject: str) -> bool:
        if envelope.kind is kind:
            return True
        self.ctx.bus.reject(
            subject, reply, "kind", f"expected {kind.value}, got {envelope.kind.value}"
        )
        return False

    def _hosts(self, plan: Plan, node: str) -> bool:
        """Whether this worker runs ``node`` of ``plan`` (its node set and its group)."""
        if node != DECISION_NODE and node not in plan.nodes:
            return False
        return (self.nodes is None or node in self.nodes) and plan.group_of(node) == self.group

    def _on_activate(self, envelope: Envelope, reply: str | None) -> None:
        """Arm every node of the activation's ``nodes`` that this worker hosts, with one reply.

        The plan is decoded once here for all of them.  When that is every node of the
        query, they start at once: every route is this worker's inbox, so the gateway
        sends no routes message (the reply says ``started``).  A stale activation (see
        :data:`START_AT_ONCE_WITHIN_S`) waits for routes instead.
        """
        node = str(envelope.payload.get("node", ""))
        if not self._expect(envelope, reply, Kind.NODE_ACTIVATE, node):
            return
        try:
            plan = Plan.from_wire(envelope.payload["plan"])
            gateway = str(envelope.payload["gateway"])
            wanted = list(dict.fromkeys(str(n) for n in envelope.payload.get("nodes") or [node]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.ctx.bus.reject(node, reply, "bad_plan", f"{node}: malformed plan: {exc!r}")
            return
        hosted = [n for n in wanted if self._hosts(plan, n)]
        if node not in hosted:
            reason = (
                f"{self.worker_id} does not host {node}"
                if node == DECISION_NODE or node in plan.nodes
                else f"{node!r} is not a node of the plan"
            )
            self.ctx.bus.reject(node, reply, "not_hosted", reason)
            return
        whole = set(hosted) == {*plan.nodes, DECISION_NODE}
        start = whole and time.time() - envelope.ts < START_AT_ONCE_WITHIN_S
        routes = dict.fromkeys(hosted, self.ctx.inbox) if start else None
        for target in hosted:
            key = ("decision", DECISION_NODE) if target == DECISION_NODE else ("supernode", target)
            self._actor(key).tell(Arm(envelope, plan, gateway, routes))
        if reply:
            armed = {
                "node": node,
                "nodes": hosted,
                "inbox": self.ctx.inbox,
                "worker": self.ctx.worker_id,
                "started": start,
            }
            self.ctx.bus.publish(reply, self.ctx.envelope(Kind.NODE_ARMED, armed, envelope))

    def _on_propose(self, envelope: Envelope, reply: str | None) -> None:
        if not self._expect(envelope, reply, Kind.SLOT_CALL, "propose"):
            return
        node = (
            str(envelope.payload["call"].get("node", ""))
            if isinstance(envelope.payload.get("call"), dict)
            else ""
        )
        slot = str(envelope.payload.get("slot", "")).partition("@")[0]  # one actor per slot,
        self._actor(("proposer", f"{node}/{slot}")).tell(Inbound(envelope, reply))  # any attempt

    def _on_synth(self, envelope: Envelope, reply: str | None) -> None:
        if not self._expect(envelope, reply, Kind.SLOT_CALL, "synthesize"):
            return
        call = envelope.payload.get("call")
        node = str(call.get("node", "")) if isinstance(call, dict) else ""
        self._actor(("synthesizer", f"{node}/synth")).tell(Inbound(envelope, reply))

    def _on_worker_lost(self, worker: str) -> None:
        self.ctx.tracker.lost(worker)

    def _on_inbox(self, envelope: Envelope, reply: str | None) -> None:
        if envelope.kind not in (Kind.NODE_ROUTES, Kind.NODE_INPUT, Kind.SLOT_ACCEPTED):
            self.ctx.bus.reject(self.ctx.inbox, reply, "kind", f"inbox got {envelope.kind.value}")
            return
        node = str(envelope.payload.get("node", ""))
        if envelope.kind is Kind.SLOT_ACCEPTED:  # bookkeeping only: no actor hand-off
            worker = str(envelope.payload["worker"])
            self.liveness.expect(worker)
            tag, _, attempt = str(envelope.payload["slot"]).partition("@")
            self.ctx.tracker.accepted(envelope.query_id, node, tag, int(attempt or 1), worker)
            return
        targets = envelope.payload.get("nodes") or [node]  # every node it is for on this worker
        if not isinstance(targets, list):
            self.ctx.bus.reject(self.ctx.inbox, reply, "payload", "'nodes' must be a list")
            return
        for target in map(str, targets):
            key = ("decision", DECISION_NODE) if target == DECISION_NODE else ("supernode", target)
            with self._lock:
                ref = self._actors.get(key)
            if ref is None:
                self.ctx.bus.reject(
                    self.ctx.inbox, reply, "unknown_node", f"no actor for {target!r}"
                )
                continue
            ref.tell(Inbound(envelope, reply))
