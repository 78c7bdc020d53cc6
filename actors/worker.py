"""A worker process's actor host: subscriptions, checked messages, supervised actors, announcements.

``Worker(nodes=None)`` serves every node of any config (wildcard
subscriptions); a set of node ids serves only those.  ``group`` joins a worker
group: the worker then serves only nodes that a config's ``placement`` puts in
that group (their subjects live under ``<prefix>.g.<group>``), and ungrouped
workers never see them.  Node activations and
slot calls use NATS queue groups, so every extra worker adds capacity and a
worker that dies simply stops receiving new work.

The worker is the edge.  Every message is checked against its typed record
(:mod:`hieramas.wire.messages`) and against the stored config version it names
(:mod:`hieramas.actors.trusted`) before an actor sees it; anything else is rejected
with a typed error, logged and counted.  Actors exist only for the nodes and slots of
stored config versions, at most ``max_actors`` of them, and an actor idle for
``idle_evict_s`` is stopped.  The worker supervises its actors: one that crashes has
failed its queries explicitly, and is replaced at once (:mod:`hieramas.actors.dispatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import structlog

from hieramas.actors.context import WorkerContext
from hieramas.actors.decision import DecisionActor
from hieramas.actors.dispatch import Retire
from hieramas.actors.messages import Arm, Inbound, SlotWork
from hieramas.actors.prompting import check_roles
from hieramas.actors.slot import ProposerActor, SynthesizerActor
from hieramas.actors.supernode import SupernodeActor
from hieramas.actors.tracking import SlotCallTracker
from hieramas.actors.trusted import KeyPolicy, Refused, ResolvedConfig, TrustedConfigs, refuse
from hieramas.bus import Bus, RecordHandler
from hieramas.controller.plan import Plan
from hieramas.liveness import HEARTBEAT_S, Liveness
from hieramas.llm.types import ChatClient
from hieramas.traces import TraceEmitter
from hieramas.wire import Envelope, Kind, Subjects, WireError, new_id
from hieramas.wire.messages import (
    NodeActivate,
    NodeArmed,
    NodeInput,
    NodeProbe,
    NodeRoutes,
    SlotAccepted,
    SlotCall,
    WorkerHello,
    payload,
    read,
    split_slot,
)
from hieramas.wire.subjects import DECISION_NODE

__all__ = ["MAX_ACTORS", "NODE_QUEUE", "SLOT_QUEUE", "Worker"]

log = structlog.get_logger(__name__)

NODE_QUEUE = "hm-nodes"
SLOT_QUEUE = "hm-slots"
START_AT_ONCE_WITHIN_S = 2.0
"""A worker that armed a whole query starts it at once only if the activation is this fresh.
Older than that, the gateway (which gives up on an arming reply after 5 s and asks another
worker) may already have moved on; the nodes then wait for routes, which never come if it did."""
MAX_ACTORS = 2048
"""A worker's default ceiling on live actors (one per node, proposer slot and synthesizer)."""
IDLE_EVICT_S = 600.0
"""An actor that received nothing for this long, and holds no query, is stopped."""

ActorKey = tuple[str, str, str]
"""(kind, node, slot): ``("supernode", node, "")``, ``("decision", "decision", "")``,
``("proposer", node, "p<i>")``, ``("synthesizer", node, "synth")``."""


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
        key_policy: KeyPolicy | None = None,
        emulator_url: str | None = None,
        max_actors: int = MAX_ACTORS,
        idle_evict_s: float = IDLE_EVICT_S,
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
            configs=TrustedConfigs(bus, policy=key_policy, emulator_url=emulator_url),
            supervisor=self,
        )
        self._own_traces = traces is None
        self._actors: dict[ActorKey, pykka.ActorRef[Any]] = {}
        self._keys: dict[str, ActorKey] = {}  # actor urn -> key, for the supervisor's calls
        self._used: dict[ActorKey, float] = {}  # key -> when it last got a message (monotonic)
        self._lock = threading.Lock()
        self._subs: list[Any] = []
        self._local: set[str] = set()  # subjects this worker serves in process (see _arm)
        self._hello_interval_s = hello_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self.max_actors = max_actors
        self.idle_evict_s = idle_evict_s
        self.liveness = Liveness(bus, self.subjects)
        self.liveness.on_lost(self._on_worker_lost)

    @property
    def worker_id(self) -> str:
        return self.ctx.worker_id

    @property
    def counters(self) -> Any:
        """The bus's counters (shared by everything on this connection)."""
        return self.ctx.bus.counters

    @property
    def actor_count(self) -> int:
        """Live actors now."""
        with self._lock:
            return len(self._actors)

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
            key_variables=self.ctx.configs.policy.describe(),
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
            self._keys.clear()
            self._used.clear()
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
        self._serve_locally(self.ctx.inbox, self._on_inbox, records=self._hand_over)
        await bus.nc.flush()
        await self._hello()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._hello_loop()), loop.create_task(self._evict_loop())]

    async def _unsubscribe_all(self) -> None:
        self.ctx.bus.stop_serving_locally(self._local)  # other workers serve them now
        self._local.clear()
        for task in self._tasks:
            task.cancel()
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
        hello = WorkerHello(
            status="bye" if status == "bye" else "alive",
            worker=self.worker_id,
            nodes=sorted(self.nodes) if self.nodes is not None else ["*"],
            group=self.group,
            inbox=self.ctx.inbox,
        )
        envelope = Envelope(kind=Kind.WORKER_HELLO, payload=payload(hello), sender=self.worker_id)
        await self.ctx.bus.apublish(self.subjects.worker_hello, envelope)

    async def _hello_loop(self) -> None:
        while True:
            await asyncio.sleep(self._hello_interval_s)
            try:
                await self._hello()
            except Exception as exc:
                log.warning("worker.hello_failed", error=str(exc))

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.idle_evict_s / 4, 0.05))
            self.evict_idle()

    def evict_idle(self, older_than_s: float | None = None) -> int:
        """Tell every actor unused for ``older_than_s`` (default ``idle_evict_s``) to retire; it
        stops if it holds no query.  Returns how many were told."""
        limit = time.monotonic() - (self.idle_evict_s if older_than_s is None else older_than_s)
        with self._lock:
            stale = [ref for key, ref in self._actors.items() if self._used.get(key, 0) <= limit]
        for ref in stale:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(Retire())
        return len(stale)

    # -- supervision (called by the actors, on their thread) ---------------------------
    def actor_crashed(
        self, ref: pykka.ActorRef[Any], error: BaseException, pending: list[object]
    ) -> None:
        """Replace a crashed actor at once and give it the messages the old one left."""
        key = self._forget(ref)
        self.counters["actor.crashed"] += 1
        log.error("actor.crashed", actor=key, error=repr(error), pending=len(pending))
        if key is None:
            return
        try:
            self._actor(key)
        except Refused:
            return
        self.counters["actor.restarted"] += 1
        for message in pending:
            self._tell(key, message)

    def actor_retired(self, ref: pykka.ActorRef[Any], pending: list[object]) -> None:
        """An idle actor stopped; messages that reached it meanwhile go to a fresh one."""
        key = self._forget(ref)
        self.counters["actor.evicted"] += 1
        if key is not None:
            for message in pending:
                self._tell(key, message)

    def _forget(self, ref: pykka.ActorRef[Any]) -> ActorKey | None:
        with self._lock:
            key = self._keys.pop(ref.actor_urn, None)
            if key is not None and self._actors.get(key) is ref:
                del self._actors[key]
                self._used.pop(key, None)
            return key

    # -- actors ----------------------------------------------------------------------
    def _actor(self, key: ActorKey, *, create: bool = True) -> pykka.ActorRef[Any]:
        """The live actor for ``key``, started if need be (``Refused`` at the ceiling)."""
        with self._lock:
            ref = self._actors.get(key)
            if ref is None or not ref.is_alive():
                if not create:
                    raise Refused("unknown_node", f"no actor for {key[1]!r} on this worker")
                if ref is None and len(self._actors) >= self.max_actors:
                    self.counters["actor.ceiling"] += 1
                    raise Refused(
                        "overloaded",
                        f"{self.worker_id} runs its maximum of {self.max_actors} actors",
                    )
                ref = self._start_actor(key)
                self._actors[key] = ref
                self._keys[ref.actor_urn] = key
            self._used[key] = time.monotonic()
            return ref

    def _start_actor(self, key: ActorKey) -> pykka.ActorRef[Any]:
        kind, node, slot = key
        if kind == "supernode":
            return SupernodeActor.start(self.ctx, node)
        if kind == "decision":
            return DecisionActor.start(self.ctx, DECISION_NODE)
        if kind == "proposer":
            return ProposerActor.start(self.ctx, node, slot)
        return SynthesizerActor.start(self.ctx, node, "synth")

    def _tell(self, key: ActorKey, message: object, *, create: bool = True) -> None:
        """Give ``message`` to ``key``'s actor; one that stopped just now is replaced."""
        for _ in range(2):
            ref = self._actor(key, create=create)
            try:
                ref.tell(message)
                return
            except pykka.ActorDeadError:
                continue
        raise Refused("overloaded", f"the actor for {key[1]!r} keeps stopping")

    @staticmethod
    def _node_key(node: str) -> ActorKey:
        return ("decision", DECISION_NODE, "") if node == DECISION_NODE else ("supernode", node, "")

    # -- the edge (these run on the bus loop) ----------------------------------------
    def _expect(self, envelope: Envelope, reply: str | None, kind: Kind, subject: str) -> bool:
        if envelope.kind is kind:
            return True
        self.ctx.bus.reject(
            subject, reply, "kind", f"expected {kind.value}, got {envelope.kind.value}"
        )
        return False

    def _refuse(self, subject: str, reply: str | None, refused: Refused) -> None:
        """A message that names what the trusted config does not have: counted, answered."""
        refuse(self.ctx.bus, subject, reply, refused)

    def _with_config(
        self,
        version: int,
        subject: str,
        reply: str | None,
        then: Callable[[ResolvedConfig], None],
    ) -> None:
        """Run ``then`` with config ``version`` (read from the store first if need be), or
        refuse the message if the store has no such version."""
        configs = self.ctx.configs
        config = configs.get(version)
        if config is not None:
            then(config)
            return

        def loaded(result: ResolvedConfig | Refused) -> None:
            if isinstance(result, Refused):
                self._refuse(subject, reply, result)
                return
            try:
                then(result)
            except Refused as exc:
                self._refuse(subject, reply, exc)

        configs.load(version, loaded)

    def _hosts(self, plan: Plan, node: str) -> bool:
        """Whether this worker runs ``node`` of ``plan`` (its node set and its group)."""
        if node != DECISION_NODE and node not in plan.nodes:
            return False
        return (self.nodes is None or node in self.nodes) and plan.group_of(node) == self.group

    def _on_activate(self, envelope: Envelope, reply: str | None) -> None:
        """Arm every node of the activation's ``nodes`` that this worker hosts, with one reply.

        The plan is decoded and checked once here for all of them: every field's type, its
        nodes against the stored config version it names, the gateway inbox.  When the
        hosted nodes are every node of the query, they start at once: every route is this
        worker's inbox, so the gateway sends no routes message (the reply says ``started``).
        A stale activation (see :data:`START_AT_ONCE_WITHIN_S`) waits for routes instead.
        """
        subject = str(envelope.payload.get("node", "activate"))
        if not self._expect(envelope, reply, Kind.NODE_ACTIVATE, subject):
            return
        try:
            body = read(envelope, NodeActivate)
        except WireError as exc:
            code = "bad_plan" if "$.plan" in str(exc) else exc.code
            self.ctx.bus.reject(subject, reply, code, f"malformed activation: {exc}")
            return
        plan = body.plan
        problem = _plan_problem(plan, envelope, self.subjects, body.gateway)
        if problem is not None:
            self.ctx.bus.reject(subject, reply, "bad_plan", f"{body.node}: {problem}")
            return
        self._with_config(
            plan.config_version,
            subject,
            reply,
            lambda config: self._arm(envelope, reply, body, config),
        )

    def _arm(
        self, envelope: Envelope, reply: str | None, body: NodeActivate, config: ResolvedConfig
    ) -> None:
        plan, node = body.plan, body.node
        strangers = [n for n in plan.nodes if not config.has_node(n)]
        if strangers:
            reason = f"nodes {strangers} are not in config version {config.version}"
            self.ctx.bus.reject(node, reply, "bad_plan", reason)
            return
        wanted = list(dict.fromkeys(body.nodes or [node]))
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
        try:
            for target in hosted:
                self._tell(
                    self._node_key(target), Arm(envelope, plan, body.gateway, config, routes)
                )
        except Refused as exc:
            self._refuse(node, reply, exc)
            return
        self._serve_slots_locally(plan, hosted)
        if reply:
            armed = NodeArmed(
                node=node, nodes=hosted, inbox=self.ctx.inbox, worker=self.worker_id, started=start
            )
            self.ctx.bus.publish(
                reply, self.ctx.envelope(Kind.NODE_ARMED, payload(armed), envelope)
            )

    def _serve_locally(
        self,
        subject: str,
        handler: Callable[[Envelope, str | None], None],
        records: RecordHandler | None = None,
    ) -> None:
        self._local.add(subject)
        self.ctx.bus.serve_locally(subject, handler, records=records)

    def _serve_slots_locally(self, plan: Plan, hosted: list[str]) -> None:
        """Locality-aware delivery: the slot calls of nodes armed here, which this worker
        also serves (same node set and group), go to its own slot actors in process instead
        of a NATS round trip to the queue group.  Each runs as a call taken from NATS would:
        checked at the edge, traced, answered to the supernode's request."""
        subjects, local = self.subjects, self._local
        for target in hosted:
            node = plan.nodes.get(target)
            if node is None:  # the decision node calls its LLM itself
                continue
            synth = subjects.synthesize(target, node.group)
            if synth not in local:
                self._serve_locally(synth, self._on_synth)
            for slot in node.active_slots:
                propose = subjects.propose(target, slot, node.group)
                if propose not in local:
                    self._serve_locally(propose, self._on_propose)

    def _on_propose(self, envelope: Envelope, reply: str | None) -> None:
        self._on_slot_call(envelope, reply, "propose")

    def _on_synth(self, envelope: Envelope, reply: str | None) -> None:
        self._on_slot_call(envelope, reply, "synthesize")

    def _on_slot_call(self, envelope: Envelope, reply: str | None, kind: str) -> None:
        if not self._expect(envelope, reply, Kind.SLOT_CALL, kind):
            return
        try:
            body = read(envelope, SlotCall)
        except WireError as exc:
            self.ctx.bus.reject(kind, reply, exc.code, str(exc))
            return
        call = body.call
        try:
            tag, attempt = split_slot(body.slot)
            if call.notify is not None and not self.subjects.is_instance(call.notify):
                raise ValueError(f"notify {call.notify!r} is not a worker inbox")
        except ValueError as exc:
            self.ctx.bus.reject(kind, reply, "payload", f"{Kind.SLOT_CALL.value}: {exc}")
            return
        if call.kind != kind or (tag == "synth") != (kind == "synthesize"):
            reason = f"a {kind} subject got a {call.kind} call for slot {tag}"
            self.ctx.bus.reject(kind, reply, "bad_call", reason)
            return
        if self.nodes is not None and call.node not in self.nodes:
            self.ctx.bus.reject(
                kind, reply, "not_hosted", f"{self.worker_id} does not host {call.node}"
            )
            return
        config = self.ctx.configs.get(envelope.config_version)
        if config is not None:  # the hot path: no closure
            self._slot_work(envelope, reply, body, tag, attempt, config)
            return
        self._with_config(
            envelope.config_version,
            kind,
            reply,
            lambda config: self._slot_work(envelope, reply, body, tag, attempt, config),
        )

    def _slot_work(
        self,
        envelope: Envelope,
        reply: str | None,
        body: SlotCall,
        tag: str,
        attempt: int,
        config: ResolvedConfig,
    ) -> None:
        call = body.call
        try:
            model, endpoint = config.slot_specs(call.node, tag, call.llm)  # not the message's
            key: ActorKey = (
                ("synthesizer", call.node, "synth")
                if tag == "synth"
                else ("proposer", call.node, tag)
            )
            self._tell(key, SlotWork(envelope, reply, body, attempt, model, endpoint))
        except Refused as exc:
            self._refuse(call.kind, reply, exc)

    def _on_worker_lost(self, worker: str) -> None:
        self.ctx.tracker.lost(worker)

    def _on_inbox(self, envelope: Envelope, reply: str | None) -> None:
        inbox, kind = self.ctx.inbox, envelope.kind
        record: type[NodeRoutes | NodeInput | SlotAccepted | NodeProbe]
        if kind is Kind.NODE_ROUTES:
            record = NodeRoutes
        elif kind is Kind.NODE_INPUT:
            record = NodeInput
        elif kind is Kind.SLOT_ACCEPTED:
            record = SlotAccepted
        elif kind is Kind.NODE_PROBE:
            record = NodeProbe
        else:
            self.ctx.bus.reject(inbox, reply, "kind", f"inbox got {kind.value}")
            return
        try:
            body = read(envelope, record)
        except WireError as exc:
            self.ctx.bus.reject(inbox, reply, exc.code, str(exc))
            return
        if isinstance(body, SlotAccepted):  # bookkeeping only: no actor hand-off
            try:
                tag, attempt = split_slot(body.slot)
            except ValueError as exc:
                self.ctx.bus.reject(inbox, reply, "payload", f"{kind.value}: {exc}")
                return
            self._on_accepted(envelope, body, tag, attempt)
            return
        if isinstance(body, NodeRoutes | NodeProbe):
            foreign = [r for r in body.routes.values() if not self.subjects.is_instance(r)]
            if foreign:
                self.ctx.bus.reject(inbox, reply, "payload", f"routes to non-inbox {foreign[:3]}")
                return
        self._to_nodes(Inbound(envelope, reply, body))

    def _hand_over(self, envelope: Envelope, body: NodeInput) -> None:
        """A node input from a node of this worker to others of it (``Bus.hand_over``): no
        encoding, no checks (it is this process's own record), straight to their actors."""
        self._to_nodes(Inbound(envelope, None, body))

    def _to_nodes(self, message: Inbound) -> None:
        body = message.body
        targets = [body.node] if isinstance(body, NodeProbe) else body.nodes or [body.node]
        for target in dict.fromkeys(targets):  # every node it is for here
            try:
                self._tell(self._node_key(target), message, create=False)
            except Refused as exc:
                self.ctx.bus.reject(self.ctx.inbox, message.reply, exc.code, str(exc))

    def _on_accepted(self, envelope: Envelope, body: SlotAccepted, tag: str, attempt: int) -> None:
        """Record which worker took one of our slot calls: only a worker whose heartbeats we
        hear, and only for a call we have outstanding (a forged one changes nothing)."""
        if not self.liveness.alive(body.worker):
            self.counters["slot.accepted_unknown_worker"] += 1
            log.warning("slot.accepted_unknown_worker", worker=body.worker, node=body.node)
            return
        if not self.ctx.tracker.accepted(envelope.query_id, body.node, tag, attempt, body.worker):
            self.counters["slot.accepted_unknown_call"] += 1


def _plan_problem(plan: Plan, envelope: Envelope, subjects: Subjects, gateway: str) -> str | None:
    """Why a decoded plan cannot be run (it is inconsistent, or names a foreign gateway)."""
    if plan.config_version != envelope.config_version:
        return (
            f"plan of config version {plan.config_version} in a v{envelope.config_version} message"
        )
    if not subjects.is_gateway_inbox(gateway):
        return f"{gateway!r} is not a gateway inbox"
    for name, node in plan.nodes.items():
        if node.node != name:
            return f"node {name!r} is described as {node.node!r}"
        edges = (*node.preds, *node.succs)
        if any(other not in plan.nodes for other in edges):
            return f"node {name!r} has an edge to a node outside the plan"
    return check_roles(plan.domain, [node.role for node in plan.nodes.values()])
