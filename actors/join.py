"""The part supernodes and the decision node share: arming, routes, and waiting for inputs.

For each query a node is *armed* first (the worker hands it an :class:`Arm`
with the decoded plan, after answering the gateway's activation request with
its inbox), then told where every other node of the query runs (routes) —
unless this worker armed the whole query, in which case the routes come with
the arming.  It starts once it has the routes and the outputs of all its
active predecessors, and forgets the query at its deadline whatever happens.

Messages may be lost (a nats-server restart) or come twice (sent again).  A node keeps
the first input of each predecessor and starts once.  It keeps what it sent for its last
:data:`FINISHED_KEEP` finished queries until their deadline, so that when the gateway
probes a quiet query (:class:`~hieramas.wire.messages.NodeProbe`) it can send its output
again; it answers every probe with where it stands (:class:`~hieramas.wire.messages.NodeState`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog

from hieramas.actors.context import WorkerContext
from hieramas.actors.dispatch import LoopActor
from hieramas.actors.messages import Arm, Expire, Inbound, tell_later
from hieramas.actors.trusted import ResolvedConfig
from hieramas.bus import error_envelope
from hieramas.controller.plan import Plan
from hieramas.wire import Envelope, Kind, WireError
from hieramas.wire.messages import (
    NodeInput,
    NodeOutput,
    NodeOutputRecord,
    NodeProbe,
    NodeRoutes,
    NodeState,
    payload,
)

__all__ = ["FINISHED_KEEP", "Finished", "JoinActor", "NodeRun"]

log = structlog.get_logger(__name__)

FINISHED_KEEP = 256
"""Finished queries whose output a node keeps (until their deadline) to send it again."""


@dataclass
class NodeRun:
    """One node's state for one query."""

    plan: Plan
    activation: Envelope
    gateway: str
    preds: tuple[str, ...]
    config: ResolvedConfig
    routes: dict[str, str] | None = None
    inputs: dict[str, NodeOutputRecord] = field(default_factory=dict)
    started: float | None = None
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each call's record (its ``llm_call`` event as a map), as the node output carries it."""
    texts: dict[str, str] = field(default_factory=dict)
    """The text each call produced, kept apart so that ``calls`` goes out without copying."""
    waiting: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)
    requests: dict[str, tuple[str, str, str, list[str]]] = field(default_factory=dict)
    expiry: asyncio.TimerHandle | None = None  # cancelled when the run finishes in time

    @property
    def ready(self) -> bool:
        return (
            self.started is None
            and self.routes is not None
            and all(p in self.inputs for p in self.preds)
        )


@dataclass(frozen=True, slots=True)
class Finished:
    """What a node keeps of a finished query to send its output again: only that (the run's
    plan, inputs and call records go; kept runs made the collector's work grow with them)."""

    activation: Envelope
    """The ids of the query (the activation without its payload)."""
    gateway: str
    routes: dict[str, str] | None
    output: NodeOutputRecord
    """What it sent, without the call records (a resent output lacks them)."""
    targets: list[str]
    deadline: float


class JoinActor(LoopActor):
    """Base of :class:`SupernodeActor` and :class:`DecisionActor`."""

    def __init__(self, ctx: WorkerContext, node: str) -> None:
        super().__init__(ctx.bus.loop, ctx.supervisor)
        self.ctx = ctx
        self.node = node
        self.runs: dict[str, NodeRun] = {}
        self.finished: OrderedDict[str, Finished] = OrderedDict()  # by query id

    # -- subclass hooks --------------------------------------------------------------
    def predecessors(self, plan: Plan) -> tuple[str, ...]:
        """The nodes whose output this node waits for in ``plan``."""
        raise NotImplementedError

    def successors(self, plan: Plan) -> list[str]:
        """The nodes this node's output goes to in ``plan`` (besides the gateway)."""
        raise NotImplementedError

    def role(self, plan: Plan) -> str:
        """This node's role in ``plan``."""
        raise NotImplementedError

    def run_node(self, run: NodeRun) -> None:
        """All inputs are here: do the work."""
        raise NotImplementedError

    def on_other(self, message: Any) -> None:
        """Messages other than arming/routes/inputs/expiry (default: reject bus messages)."""
        if isinstance(message, Inbound):
            kind = message.envelope.kind.value
            self.reject(message, "kind", f"{self.node} does not accept {kind}")

    # -- supervision -----------------------------------------------------------------
    def idle(self) -> bool:
        return not self.runs

    def on_crash(self, message: object, error: BaseException) -> None:
        """Fail every query this node holds now, explicitly, rather than at its deadline."""
        reason = f"node {self.node} crashed: {type(error).__name__}: {error}"
        runs = list(self.runs.values())
        if isinstance(message, Arm) and message.activation.query_id not in self.runs:
            runs.append(  # it crashed while arming: that query is held too
                NodeRun(
                    plan=message.plan,
                    activation=message.activation,
                    gateway=message.gateway,
                    preds=(),
                    config=message.config,
                    routes=message.routes,
                )
            )
        for run in runs:
            try:
                self.fail(run, reason)
            except Exception:
                log.exception("node.fail_failed", node=self.node)
            self.ctx.bus.counters["node.crash_failed"] += 1
        if isinstance(message, Inbound):
            self.reject(message, "internal", reason)

    def fail(self, run: NodeRun, reason: str) -> None:
        """End ``run`` with a failure output (no text; ``reason`` as its error), sent to the
        gateway and the successors like any output."""
        plan = run.plan
        role = self.role(plan)
        output = NodeOutputRecord(
            node=self.node,
            role=role,
            status="error",
            answerless=role in plan.answerless_roles,
            error=reason,
            failures=[reason],
            started=run.started,
            finished=time.time(),
            worker=self.ctx.worker_id,
        )
        log.error("node.failed", node=self.node, query_id=run.activation.query_id, reason=reason)
        self.finish(run, output, self.successors(plan))

    # -- message handling ------------------------------------------------------------
    def on_receive(self, message: Any) -> None:
        if isinstance(message, Inbound):
            body = message.body
            if isinstance(body, NodeRoutes):
                self._on_routes(message.envelope, body)
            elif isinstance(body, NodeInput):
                self._on_input(message, body)
            elif isinstance(body, NodeProbe):
                self._on_probe(message, body)
            else:
                self.on_other(message)
        elif isinstance(message, Arm):
            self._on_arm(message)
        elif isinstance(message, Expire):
            run = self.runs.pop(message.query_id, None)
            if run is not None:
                self.ctx.bus.counters["node.expired"] += 1
                log.warning("node.expired", node=self.node, query_id=message.query_id)
        else:
            self.on_other(message)

    def _on_arm(self, message: Arm) -> None:
        envelope, plan = message.activation, message.plan  # the worker checked the node is in it
        run = NodeRun(
            plan=plan,
            activation=envelope,
            gateway=message.gateway,
            preds=self.predecessors(plan),
            config=message.config,
            routes=message.routes,
        )
        old = self.runs.get(envelope.query_id)
        if old is not None and old.expiry is not None:  # armed again: the new run's timer counts
            old.expiry.cancel()
        self.runs[envelope.query_id] = run
        delay = max(plan.deadline_unix - time.time(), 0.0) + 1.0
        run.expiry = tell_later(self.ctx.bus, delay, self.actor_ref, Expire(envelope.query_id))
        self._maybe_start(run)

    def _on_routes(self, envelope: Envelope, body: NodeRoutes) -> None:
        run = self.runs.get(envelope.query_id)
        if run is None:
            self.ctx.bus.counters["node.unknown_query"] += 1
            return
        run.routes = body.routes
        self._maybe_start(run)

    def _on_input(self, message: Inbound, body: NodeInput) -> None:
        run = self.runs.get(message.envelope.query_id)
        if run is None:
            self.ctx.bus.counters["node.unknown_query"] += 1
            return
        output = body.output
        if output.node not in run.preds:  # not an input of this node: never counted as one
            self.reject(
                message, "not_a_predecessor", f"{output.node!r} is not an input of {self.node}"
            )
            return
        if output.node in run.inputs:  # sent again (a probe), or by a second run of it:
            self.ctx.bus.counters["node.duplicate_input"] += 1  # the first one stands
            return
        run.inputs[output.node] = output
        self._maybe_start(run)

    def _on_probe(self, message: Inbound, body: NodeProbe) -> None:
        """Say where this node stands in the query; mend what the probe can mend here."""
        query_id = message.envelope.query_id
        run = self.runs.get(query_id)
        missing: list[str] = []
        state: Literal["waiting", "running", "finished", "unknown"]
        if run is not None:
            if run.routes is None:  # the routes were lost: the probe brings them
                run.routes = body.routes
                self._maybe_start(run)
            state = "running" if run.started is not None else "waiting"
            missing = [p for p in run.preds if p not in run.inputs]
        elif query_id in self.finished:
            done = self.finished[query_id]
            self.ctx.bus.counters["node.output_resent"] += 1
            log.warning("node.output_resent", node=self.node, query_id=query_id)
            # to the routes of the probe: a successor may have moved since
            again = dataclasses.replace(done, routes=body.routes)
            self._deliver(again, done.output, done.targets)
            state = "finished"
        else:
            state = "unknown"
        if message.reply:
            answer = NodeState(node=self.node, state=state, missing=missing)
            self.ctx.bus.publish(
                message.reply, self.ctx.envelope(Kind.NODE_STATE, payload(answer), message.envelope)
            )

    def _maybe_start(self, run: NodeRun) -> None:
        if run.ready:
            run.started = time.time()
            self.run_node(run)

    # -- helpers for subclasses ------------------------------------------------------
    def finish(self, run: NodeRun, output: NodeOutputRecord, targets: list[str]) -> None:
        """Send ``output`` to the gateway and to ``targets`` (node ids, via routes); forget the run.

        The gateway's copy goes first: if it is over the payload limit, the node has failed
        (see :meth:`_send`), and its successors get that failure instead of its text.
        """
        query_id = run.activation.query_id
        self.runs.pop(query_id, None)
        if run.expiry is not None:
            run.expiry.cancel()
        sent = self._deliver(run, output, targets)
        if sent is None:
            return  # nothing fits: the query ends at its deadline
        finished = self.finished
        finished[query_id] = Finished(
            activation=msgspec.structs.replace(run.activation, payload={}),
            gateway=run.gateway,
            routes=run.routes,
            output=msgspec.structs.replace(sent, calls={}) if sent.calls else sent,
            targets=targets,
            deadline=run.plan.deadline_unix,
        )
        now = time.time()  # forget what is past its deadline, and the oldest beyond the bound
        while finished:
            oldest = next(iter(finished.values()))
            if len(finished) <= FINISHED_KEEP and oldest.deadline > now:
                break
            finished.popitem(last=False)

    def _deliver(
        self, run: NodeRun | Finished, output: NodeOutputRecord, targets: list[str]
    ) -> NodeOutputRecord | None:
        """Send ``output`` to the gateway and to ``targets``; what went out (see :meth:`finish`)."""
        sent = self._send(run, run.gateway, Kind.NODE_OUTPUT, None, output)
        if sent is None:
            return None
        routes = run.routes or {}
        at: dict[str, list[str]] = {}  # one message per worker inbox, not per target
        for target in targets:
            if target in routes:
                at.setdefault(routes[target], []).append(target)
        forwarded = sent.as_input()
        bus = self.ctx.bus
        for inbox, hosted in at.items():
            if bus.takes_records(inbox):
                # to nodes of this worker: in process, not encoded (the input is smaller than
                # the output whose copy to the gateway proved within the limit)
                body = NodeInput(node=hosted[0], nodes=hosted, output=forwarded)
                envelope = self.ctx.envelope(Kind.NODE_INPUT, payload(body), run.activation)
                if bus.hand_over(inbox, envelope, body):
                    continue
            self._send(run, inbox, Kind.NODE_INPUT, hosted, forwarded)
        return sent

    def _send(
        self,
        run: NodeRun | Finished,
        subject: str,
        kind: Kind,
        hosted: list[str] | None,
        output: NodeOutputRecord,
    ) -> NodeOutputRecord | None:
        """Publish ``output`` (a ``node.output``, or a ``node.input`` for ``hosted``); returns
        what went out.

        Over the payload limit, the oversize output is logged and counted and a failure
        output goes in its place (no text; the reason in ``error`` and ``failures``), so
        the query goes on and its result says what happened.  ``None``: nothing fitted.
        """
        bus = self.ctx.bus
        try:
            self._publish(run, subject, kind, hosted, output)
            return output
        except WireError as exc:
            reason = f"output not delivered: {exc}"
        query_id = run.activation.query_id
        bus.counters["node.output_oversize"] += 1
        log.warning("node.output_oversize", node=self.node, query_id=query_id, reason=reason)
        for fallback in _undelivered(output, reason):
            try:
                self._publish(run, subject, kind, hosted, fallback)
                return fallback
            except WireError:
                continue
        bus.counters["node.output_lost"] += 1
        log.error("node.output_lost", node=self.node, query_id=query_id, reason=reason)
        return None

    def _publish(
        self,
        run: NodeRun | Finished,
        subject: str,
        kind: Kind,
        hosted: list[str] | None,
        output: NodeOutputRecord,
    ) -> None:
        """Publish ``output``, or hand it over to a handler in this process (the gateway's
        inbox, in ``hieramas up``); ``WireError`` "oversize" over the payload limit."""
        body: NodeOutput | NodeInput
        if hosted is None:
            body = NodeOutput(output=output)
        else:
            body = NodeInput(node=hosted[0], nodes=hosted, output=output)
        envelope = self.ctx.envelope(kind, payload(body), run.activation)
        bus = self.ctx.bus
        if bus.takes_records(subject):
            bus.encode(envelope)  # only to apply the payload limit, as over NATS
            if bus.hand_over(subject, envelope, body):
                return
        bus.publish(subject, envelope)  # over NATS (or its handler stopped taking records)

    def reject(self, message: Inbound, code: str, reason: str) -> None:
        """Log, count and (if asked) answer a message this node cannot take."""
        self.ctx.bus.counters[f"rejected.{code}"] += 1
        log.warning("node.rejected", node=self.node, code=code, reason=reason)
        if message.reply:
            self.ctx.bus.publish(
                message.reply,
                error_envelope(code, reason, sender=self.ctx.worker_id, like=message.envelope),
            )


def _undelivered(output: NodeOutputRecord, reason: str) -> list[NodeOutputRecord]:
    """Failure outputs that stand in for ``output``, largest first: without its text,
    then with only its identity and the reason."""
    return [
        msgspec.structs.replace(
            output,
            status="error",
            text="",
            answer=None,
            error=reason,
            failures=[*output.failures, reason],
        ),
        NodeOutputRecord(
            node=output.node,
            role=output.role,
            answerless=output.answerless,
            worker=output.worker,
            status="error",
            error=reason,
            failures=[reason],
        ),
    ]
