"""The gateway: answers queries by planning them and wiring their nodes together.

For one query it (1) freezes a :class:`Plan` from the current config, (2) arms
every active node and the decision node with one activation per worker, not
per node: it goes to the queue group of the first node still unarmed, and the
worker that takes it arms every listed node it hosts and answers with its
inbox; what it does not host goes out again, (3) sends every armed worker the
routes (unless one worker armed the whole query and started it at once), and
(4) waits for the decision node's output.  The query always ends: with an
answer, or an explicit error (``no_worker``, ``timeout``, ...) within its
deadline; a bug in the gateway is an ``internal`` error, and a result too big
for NATS a brief ``oversize`` one, never a reply that does not come.

Faults on the way are repaired, not waited out.  A worker that dies has its nodes armed
again elsewhere.  A query that makes no progress for :data:`STALL_S` (doubling up to
:data:`STALL_MAX_S` while it stays quiet) has each unfinished node probed
(:class:`~hieramas.wire.messages.NodeProbe`): the probe carries the routes (lost routes
arrive), a node that finished sends its output again, a node that waits for an input gets
it again from the gateway, and a node that holds nothing of the query (its activation or
its worker's state was lost) is armed again.  Receivers keep the first copy of each node's
output, so whatever is sent twice changes nothing.  And each query's state is kept in
NATS, so that another controller's gateway finishes it if this one dies
(:mod:`hieramas.controller.failover`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import msgspec
import structlog

from hieramas import metrics
from hieramas.bus import Bus, BusError, RemoteError
from hieramas.controller.config import ConfigError, HieraConfig, PlannerConfig
from hieramas.controller.failover import RESENT, Failover, QueryState
from hieramas.controller.plan import MAX_TIMEOUT_S, Plan
from hieramas.controller.planner import (
    Assignment,
    Planner,
    PlanRequest,
    StaticPlanner,
    assignment_record,
    build_plan,
)
from hieramas.controller.planners import PlannerError, make_planner
from hieramas.controller.store import ConfigStore, CorruptConfigError, StoredConfig
from hieramas.controller.vote import combine_votes
from hieramas.liveness import Liveness
from hieramas.logs import bind_log_context
from hieramas.traces import TraceEmitter
from hieramas.wire import Envelope, Kind, Subjects, WireError, input_output, new_id
from hieramas.wire.events import AssignmentRecord, QueryDone, VoteRecord, VoteRun
from hieramas.wire.messages import (
    NodeActivate,
    NodeArmed,
    NodeInput,
    NodeOutput,
    NodeOutputRecord,
    NodeProbe,
    NodeRoutes,
    NodeState,
    payload,
    read,
)
from hieramas.wire.subjects import DECISION_NODE
from hieramas.wire.traceparent import CallerSpan, parse_traceparent

__all__ = ["GATEWAY_QUEUE", "Gateway", "QueryFailed"]

log = structlog.get_logger(__name__)

GATEWAY_QUEUE = "hm-gw"
ARM_TIMEOUT_S = 5.0
BRIEF_RESULT_KEYS = (
    "query_id", "trace_id", "config_version", "domain", "item_id", "planner", "policy_version",
    "sampled", "emulated", "cost_usd", "prompt_tokens", "completion_tokens", "latency_s",
)  # fmt: skip
"""What a result too big to send keeps: ids and totals, no texts."""
STALL_S = 2.0
"""A query with no node output for this long has its unfinished nodes probed."""
STALL_MAX_S = 8.0
"""The probe interval doubles while a query stays quiet (a long LLM call), up to this."""
PROBE_TIMEOUT_S = 2.0
NO_WORKER_FIRST_WAIT_S = 0.1
NO_WORKER_LAST_WAIT_S = 0.4
"""A node nobody serves is asked for again after 0.1, 0.2 and 0.4 s (0.7 s in all) before
the query fails with ``no_worker``: its workers may be subscribing again after a reconnect."""
MIN_RESUME_S = 1.0
"""An adopted query with less time than this left fails at once (``gateway_lost``) rather
than being run again."""
PLANNER_THREADS = 2
"""Threads for heavy planners (and for building planners): a torch forward pass releases
the GIL, so two plan at once on two cores while the loop runs on."""


class QueryFailed(Exception):
    """A query that cannot be answered; ``code`` is reported to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Planned(NamedTuple):
    """A query's plan and how it was chosen."""

    plan: Plan
    assignment: Assignment
    record: AssignmentRecord
    planner: str
    votes: tuple[Plan, ...] = ()
    """A top-k vote's plans, one per ``assignment.vote`` entry (empty: no vote)."""


@dataclass
class QueryRun:
    """The gateway's state for one query."""

    plan: Plan
    envelope: Envelope
    started: float
    assignment: Assignment
    record: AssignmentRecord
    planner: str = "static"
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    rearmed: set[str] = field(default_factory=set)
    done: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    key: str | None = None
    """Its failover record's key, if it has one."""
    request: dict[str, Any] = field(default_factory=dict)
    """The query's payload as asked."""
    replies: list[str] = field(default_factory=list)
    """More subjects to send the result to: the same query asked again while it runs."""
    routed: bool = False
    """Every node has its routes: from now on, silence is a stall."""
    progress: float = 0.0
    """When it last made progress (an output, a probe round; monotonic)."""
    stall_s: float = STALL_S
    probes: int = 0
    rearming: set[str] = field(default_factory=set)
    children: list[QueryRun] = field(default_factory=list)
    """A top-k vote's runs (one DAG each, best-ranked first): they run, this one votes."""
    vote: VoteRecord | None = None


class Gateway:
    """Serves ``<prefix>.gw.query`` for one controller process."""

    def __init__(
        self,
        bus: Bus,
        store: ConfigStore,
        *,
        subjects: Subjects | None = None,
        planner: Planner | None = None,
        planner_spec: PlannerConfig | None = None,
        traces: TraceEmitter | None = None,
        emulator_url: str | None = None,
        answerless_roles: Callable[[str], Iterable[str]] | None = None,
        liveness: Liveness | None = None,
        failover: bool = False,
    ) -> None:
        self.bus = bus
        self.store = store
        self.subjects = subjects or Subjects()
        self.planner: Planner = planner or StaticPlanner()
        self.planner_spec = planner_spec
        self._fixed_planner = planner is not None  # a planner object given: it plans everything
        self._planners: dict[str, asyncio.Future[Planner]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.traces = traces
        self.emulator_url = emulator_url
        self.gateway_id = f"gw-{new_id()[:8]}"
        self.inbox = self.subjects.gateway_inbox(self.gateway_id)
        self.runs: dict[str, QueryRun] = {}
        # queries being planned, before their run exists: query id -> (request, replies);
        # a resend arriving while a slow planner works joins it instead of running again
        self.planning: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self.vote_runs = 0
        """How many of ``runs`` are a top-k vote's runs, not queries of their own."""
        metrics.track("gateway", self)  # queries in flight, read at scrape time
        self._answerless = answerless_roles
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.liveness = liveness
        if liveness is not None:
            liveness.on_lost(self._on_worker_lost)
        store.on_change(self._prebuild)
        self.failover = (
            Failover(bus, self.subjects, self.gateway_id, self.inbox, self.resume)
            if failover
            else None
        )
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to this gateway's inbox, then (failover on) greet the other gateways,
        then take queries."""
        self._subs = [await self.bus.asubscribe(self.inbox, self._on_inbox)]
        # a worker sharing this process and connection (``hieramas up``) sends its node
        # outputs in process; workers elsewhere still reach the subscription over NATS
        self.bus.serve_locally(self.inbox, self._on_inbox, records=self._take_output)
        if self.failover is not None:
            await self.failover.start()
        self._subs.append(
            await self.bus.asubscribe(self.subjects.query, self._on_query, queue=GATEWAY_QUEUE)
        )
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def stop(self) -> None:
        self.bus.stop_serving_locally([self.inbox])
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._watch is not None:
            self._watch.cancel()
        if self.failover is not None:
            await self.failover.stop()  # its goodbye: a peer adopts what is still in flight
        for pending in self._planners.values():
            if pending.done() and pending.exception() is None:
                try:
                    await pending.result().stop()
                except Exception:
                    log.exception("planner.stop_failed")
        self._planners.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- planners --------------------------------------------------------------------
    async def prepare(self) -> None:
        """Build and start the default planner now, not at the first query
        (:class:`PlannerError` if it cannot be: a controller told to use it should not
        start without it)."""
        if self.planner_spec is not None and not self._fixed_planner:
            try:
                await self._planner_of(self.planner_spec)
            except QueryFailed as exc:
                raise PlannerError(str(exc)) from None

    def _prebuild(self, stored: StoredConfig) -> None:
        """A config became current: build and start its planner now, not at its first query
        (a learned planner then loads the current policy version before any query needs it)."""
        spec = self._planner_spec(stored.config)
        if spec is None:
            return

        async def build() -> None:
            try:
                await self._planner_of(spec)
            except QueryFailed as exc:  # its queries will try again and fail explicitly
                self.bus.counters["gateway.planner_prebuild_failed"] += 1
                log.warning("planner.prebuild_failed", version=stored.version, error=str(exc))

        task = asyncio.get_running_loop().create_task(build())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _planner_spec(self, config: HieraConfig) -> PlannerConfig | None:
        """The spec of the planner for ``config``'s queries: the config's own, else the
        controller's default; ``None``: :attr:`planner`."""
        if self._fixed_planner:
            return None
        return config.planner or self.planner_spec

    async def _planner_of(self, spec: PlannerConfig) -> Planner:
        """The (one, shared) planner ``spec`` names, built off the loop and started once."""
        key = spec.model_dump_json()
        pending = self._planners.get(key)
        if pending is None:
            pending = self._planners[key] = asyncio.ensure_future(self._make_planner(spec))
        try:
            return await asyncio.shield(pending)  # a query cancelled meanwhile leaves it be
        except Exception as exc:
            if self._planners.get(key) is pending:
                del self._planners[key]  # not cached: the next query tries again
            raise QueryFailed("bad_planner", f"planner {spec.kind!r}: {exc}") from None

    async def _make_planner(self, spec: PlannerConfig) -> Planner:
        loop = asyncio.get_running_loop()
        planner = await loop.run_in_executor(self._pool(), make_planner, spec)  # may import torch
        await planner.start(self.bus)
        log.info("planner.started", kind=planner.kind, heavy=planner.heavy)
        return planner

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=PLANNER_THREADS, thread_name_prefix="planner"
            )
        return self._executor

    async def _assign(
        self, planner: Planner, config: HieraConfig, request: PlanRequest
    ) -> Assignment:
        """``planner.assign``: in the thread pool if it is heavy, so the loop never waits."""
        if not planner.heavy:
            return planner.assign(config, request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), planner.assign, config, request)

    # -- inbound ---------------------------------------------------------------------
    def _on_query(self, envelope: Envelope, reply: str | None) -> None:
        if envelope.kind is not Kind.QUERY:
            self.bus.reject(
                self.subjects.query, reply, "kind", f"expected query, got {envelope.kind}"
            )
            return
        running = self.runs.get(envelope.query_id) if envelope.query_id else None
        if running is not None and running.request == envelope.payload:
            # the same query again (its client resent it after a reconnect, or retried
            # it): it joins the run, which answers every subject it was asked on
            self.bus.counters["gateway.query_joined"] += 1
            if reply and reply not in running.replies:
                running.replies.append(reply)
            return
        if self._join_planning(envelope, reply):
            return
        if envelope.span_id == RESENT and self.failover is not None and envelope.query_id:
            work: Any = self._answer_resent(envelope, reply)  # only resends pay the lookup
        else:
            work = self._answer(envelope, reply)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _join_planning(self, envelope: Envelope, reply: str | None) -> bool:
        """Join a query to the same one being planned here (its client resent it while the
        planner worked); whether it was."""
        planning = self.planning.get(envelope.query_id) if envelope.query_id else None
        if planning is None or planning[0] != envelope.payload:
            return False
        self.bus.counters["gateway.query_joined"] += 1
        if reply and reply not in planning[1]:
            planning[1].append(reply)
        return True

    async def _answer_resent(self, envelope: Envelope, reply: str | None) -> None:
        """A query its client sent again that this gateway does not run: run it only if
        no gateway does (its record says), so a resend never runs a query twice."""
        assert self.failover is not None
        try:
            state = await self.failover.lookup(envelope.query_id)
        except Exception as exc:  # no answer from the bucket: running it beats a hang
            self.bus.counters["gateway.resend_lookup_failed"] += 1
            log.warning("query.resend_lookup_failed", query_id=envelope.query_id, error=str(exc))
            state = None
        running = self.runs.get(envelope.query_id)
        if running is not None and running.request == envelope.payload:
            self.bus.counters["gateway.query_joined"] += 1  # it started here meanwhile
            if reply and reply not in running.replies:
                running.replies.append(reply)
            return
        if self._join_planning(envelope, reply):  # or is being planned here meanwhile
            return
        if state is None:
            self.bus.counters["gateway.resend_run"] += 1  # lost before any gateway had it
            await self._answer(envelope, reply)
            return
        owner = state.owner
        if owner == self.gateway_id:
            # ours, but not running here: its run ended and both its answer and its record's
            # purge were lost (a NATS restart mid-stream); nobody else would ever answer it
            self.bus.counters["gateway.resend_rerun"] += 1
            await self._answer(envelope, reply)
            return
        if self.failover.settled and not self.failover.peers.alive(owner):
            self.bus.counters["gateway.resend_adopting"] += 1
            await self.failover.adopt(owner)  # its owner is gone: adopt it now
            return
        self.bus.counters["gateway.resend_owned"] += 1  # its owner answers the same subject

    def _on_inbox(self, envelope: Envelope, reply: str | None) -> None:
        if envelope.kind is not Kind.NODE_OUTPUT:
            self.bus.reject(self.inbox, reply, "kind", f"gateway inbox got {envelope.kind.value}")
            return
        try:
            node = read(envelope, NodeOutput).output.node  # every field checked
        except WireError as exc:
            self.bus.reject(self.inbox, reply, exc.code, str(exc))
            return
        self._on_output(envelope, reply, node, envelope.payload["output"])

    def _take_output(self, envelope: Envelope, body: NodeOutput) -> None:
        """A node output handed over by a worker of this process (``Bus.hand_over``): its
        own record, not decoded or checked again."""
        self._on_output(envelope, None, body.output.node, msgspec.to_builtins(body.output))

    def _on_output(
        self, envelope: Envelope, reply: str | None, node: str, output: dict[str, Any]
    ) -> None:
        run = self.runs.get(envelope.query_id)
        if run is None:
            self.bus.counters["gateway.late_output"] += 1
            return
        if node != DECISION_NODE and node not in run.plan.nodes:  # never counted as progress
            self.bus.counters["gateway.foreign_output"] += 1
            self.bus.reject(
                self.inbox, reply, "unknown_node", f"{node!r} is not a node of the plan"
            )
            return
        if node in run.outputs:  # a second run of the node (re-armed, or a retried arming),
            self.bus.counters["gateway.duplicate_output"] += 1  # or a resent output: the
            return  # first one stands
        run.outputs[node] = output
        run.progress, run.stall_s = time.monotonic(), STALL_S
        if node == DECISION_NODE and not run.done.done():
            run.done.set_result(output)
            return
        for target in run.rearmed:  # a re-armed node may have missed this on the old route
            if target not in run.outputs and node in self._preds(run, target):
                self._send_input(run, target, output)

    # -- failover --------------------------------------------------------------------
    @staticmethod
    def _preds(run: QueryRun, node: str) -> tuple[str, ...]:
        return tuple(run.plan.nodes) if node == DECISION_NODE else run.plan.nodes[node].preds

    def _send_input(self, run: QueryRun, target: str, output: dict[str, Any]) -> None:
        forwarded = msgspec.convert(input_output(output), NodeOutputRecord)  # checked on arrival
        body = payload(NodeInput(node=target, output=forwarded))
        self.bus.publish(
            run.routes[target], run.envelope.reply(Kind.NODE_INPUT, body, sender=self.gateway_id)
        )

    def _on_worker_lost(self, worker: str) -> None:
        for run in list(self.runs.values()):
            lost = [n for n, w in run.workers.items() if w == worker and n not in run.outputs]
            if lost and not run.done.done():
                self._spawn(self._rearm(run, lost, f"worker {worker} lost"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rearm(self, run: QueryRun, nodes: list[str], reason: str) -> None:
        """Arm ``nodes`` again on live workers, re-route the query, replay their inputs."""
        nodes = [n for n in nodes if n not in run.rearming]
        if not nodes:
            return  # already being armed again
        self.bus.counters["gateway.rearmed"] += len(nodes)
        log.warning("query.rearm", query_id=run.envelope.query_id, nodes=nodes, reason=reason)
        run.rearming.update(nodes)
        try:
            await self._arm(run, nodes)
            run.rearmed.update(nodes)
            await self._send_routes(run, [n for n in run.routes if n not in run.outputs])
            for node in nodes:
                for pred in self._preds(run, node):
                    if pred in run.outputs:
                        self._send_input(run, node, run.outputs[pred])
        except QueryFailed as exc:
            self._end(run, exc)
        except Exception as exc:  # a bug: end the query now, not at its deadline
            log.exception("query.rearm_crashed", query_id=run.envelope.query_id)
            self._end(
                run, QueryFailed("internal", f"re-arming failed: {type(exc).__name__}: {exc}")
            )
        finally:
            run.rearming.difference_update(nodes)

    # -- stalls ----------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        """Probe the unfinished nodes of every query that has been quiet too long."""
        while True:
            await asyncio.sleep(STALL_S / 4)
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.routed and not run.done.done() and now - run.progress >= run.stall_s:
                    run.progress, run.stall_s = now, min(run.stall_s * 2, STALL_MAX_S)
                    run.probes += 1
                    for node in (*run.plan.nodes, DECISION_NODE):
                        if node not in run.outputs and node in run.routes:
                            self._spawn(self._probe(run, node))

    async def _probe(self, run: QueryRun, node: str) -> None:
        """Ask ``node`` how it is, and mend what it says is missing (see the module doc)."""
        probe = NodeProbe(node=node, routes=dict(run.routes), round=run.probes)
        envelope = run.envelope.reply(Kind.NODE_PROBE, payload(probe), sender=self.gateway_id)
        self.bus.counters["gateway.probes"] += 1
        try:
            answer = read(
                await self.bus.arequest(run.routes[node], envelope, PROBE_TIMEOUT_S), NodeState
            )
        except RemoteError as exc:  # its worker has no actor for it (evicted, restarted)
            if exc.code != "unknown_node":
                log.warning("query.probe_refused", node=node, code=exc.code, reason=exc.detail)
                return
            answer = NodeState(node=node, state="unknown")
        except (BusError, WireError) as exc:  # the next round asks again; a dead worker's
            log.info("query.probe_unanswered", node=node, error=str(exc))  # nodes are re-armed
            return
        if run.done.done() or node in run.outputs:
            return
        if answer.state == "unknown":
            self.bus.counters["gateway.probe_rearmed"] += 1
            await self._rearm(run, [node], "probed: the node holds nothing of the query")
        elif answer.state == "waiting":
            for pred in answer.missing:
                if pred in run.outputs and pred in self._preds(run, node):
                    self.bus.counters["gateway.input_resent"] += 1
                    self._send_input(run, node, run.outputs[pred])
        elif answer.state == "finished":
            self.bus.counters["gateway.output_resent"] += 1

    @staticmethod
    def _end(run: QueryRun, exc: QueryFailed) -> None:
        if not run.done.done():
            run.done.set_exception(exc)

    # -- adopted queries -------------------------------------------------------------
    def resume(self, state: QueryState, key: str) -> None:
        """Finish a query adopted from a gateway that died (on the loop): run it again, same
        ids and config version, to the same deadline, and answer its client.  With less than
        :data:`MIN_RESUME_S` left, fail it at once (``gateway_lost``).

        A config version applied since it was planned may have replaced endpoints that are
        gone now (a restarted training run's LLM server or emulator, on a new port): the
        query then runs under the current version, or, when its client asked for that old
        version by number, fails at once (``config_superseded``) rather than call them."""
        remaining = state.deadline - time.time()
        request = dict(state.request)
        request["timeout_s"] = max(remaining, MIN_RESUME_S)
        current = self.store.current_version
        stale = bool(state.config_version and current and state.config_version != current)
        pinned = request.get("config_version") is not None
        if state.config_version and not stale:
            request["config_version"] = state.config_version
        lost = state.adopted_from[-1] if state.adopted_from else "?"
        failure: QueryFailed | None = None
        if stale and pinned:
            self.bus.counters["gateway.adopted_superseded"] += 1
            failure = QueryFailed(
                "config_superseded",
                f"gateway {lost} died running the query under config v{state.config_version}; "
                f"v{current} is current now and that version's endpoints may be gone",
            )
        elif remaining < MIN_RESUME_S:
            failure = QueryFailed(
                "gateway_lost",
                f"gateway {lost} died running the query, {max(remaining, 0):.1f}s before its "
                "deadline: too late to run it again",
            )
        envelope = Envelope(
            kind=Kind.QUERY,
            payload=request,
            query_id=state.query_id,
            trace_id=state.trace_id,
            sender=state.sender,
        )
        self._spawn(
            self._answer(
                envelope, state.reply, started=state.started, key=key,
                adopted_from=state.adopted_from, failure=failure,
            )
        )  # fmt: skip

    # -- one query -------------------------------------------------------------------
    async def _answer(
        self,
        envelope: Envelope,
        reply: str | None,
        *,
        started: float | None = None,
        key: str | None = None,
        adopted_from: list[str] | None = None,
        failure: QueryFailed | None = None,
    ) -> None:
        """Run one query and answer it; an adopted one (``key`` of its record, the gateways
        that ``adopted_from``) keeps its start time, or fails at once with ``failure``."""
        started = started or time.time()
        query_id = envelope.query_id or new_id()
        trace_id = envelope.trace_id or new_id()
        run: QueryRun | None = None
        failed: QueryFailed | None = failure
        caller: CallerSpan | None = None
        if "traceparent" in envelope.payload:  # our spans join the caller's trace
            try:
                caller = parse_traceparent(envelope.payload["traceparent"])
                trace_id = caller.trace_id
            except WireError as exc:
                failed = failed or QueryFailed("bad_query", str(exc))
        bind_log_context(query_id=query_id, trace_id=trace_id)  # this query's own task
        joined: list[str] = []
        if envelope.query_id and envelope.query_id not in self.planning:
            self.planning[envelope.query_id] = (envelope.payload, joined)
        try:
            if failed is None:
                run = await self._start_run(envelope, query_id, trace_id, started, reply, key)
                run.replies.extend(s for s in joined if s not in run.replies)
                self._end_planning(envelope, joined)
                key = run.key
                result = await self._run(run)
        except QueryFailed as exc:
            failed = exc
        except Exception as exc:  # a bug: the client still gets an answer, not a timeout
            log.exception("query.crashed", query_id=query_id)
            failed = QueryFailed("internal", f"the gateway failed: {type(exc).__name__}: {exc}")
        finally:
            self._end_planning(envelope, joined)
            self.runs.pop(query_id, None)
        if failed is not None:
            self._record_failure(failed, query_id)
            result = self._failure_result(failed, query_id, trace_id, started, run)
        if adopted_from:
            result["adopted_from"] = list(adopted_from)
        replies = [s for s in dict.fromkeys([reply, *(run.replies if run else joined)]) if s]
        data: bytes | None = None
        if replies:
            result, data = self._sendable(result)
        if self.traces is not None:
            self.traces.emit(_query_event(result, run, envelope, started, caller))
        for subject in replies:
            if data is None:
                break
            # a client on this process's connection (an embedded stack) gets it in process
            self.bus.publish_encoded(subject, data, functools.partial(self._reply_failed, query_id))
        if key is not None and self.failover is not None:
            self.failover.end(key)  # after the reply: a death before it leaves the record

    def _end_planning(self, envelope: Envelope, joined: list[str]) -> None:
        """Stop joining resends to this query's planning (its run takes them now)."""
        planning = self.planning.get(envelope.query_id)
        if planning is not None and planning[1] is joined:
            del self.planning[envelope.query_id]

    async def _start_run(
        self,
        envelope: Envelope,
        query_id: str,
        trace_id: str,
        started: float,
        reply: str | None = None,
        key: str | None = None,
    ) -> QueryRun:
        """Plan the query, register its run, and record it for failover (unless adopted:
        ``key`` is then its record already)."""
        plan, assignment, record, planner, votes = await self._plan(envelope, query_id)
        run = QueryRun(
            plan=plan,
            assignment=assignment,
            record=record,
            planner=planner,
            envelope=Envelope(
                kind=Kind.NODE_ACTIVATE,
                payload={},
                query_id=query_id,
                trace_id=trace_id,
                span_id=new_id(),
                config_version=plan.config_version,
                sender=self.gateway_id,
            ),
            started=started,
            key=key,
            request=envelope.payload,
            replies=[reply] if reply else [],
        )
        run.children = [
            QueryRun(
                plan=child,
                assignment=chosen,
                record=record,
                planner=planner,
                envelope=msgspec.structs.replace(
                    run.envelope, query_id=child.query_id, span_id=new_id()
                ),
                started=started,
            )
            for child, chosen in zip(votes, assignment.vote, strict=True)
        ]
        self.runs[query_id] = run
        if key is None and self.failover is not None:
            run.key = self.failover.begin(
                QueryState(
                    query_id=query_id,
                    trace_id=trace_id,
                    owner=self.gateway_id,
                    reply=reply,
                    request=envelope.payload,
                    sender=envelope.sender,
                    started=started,
                    deadline=plan.deadline_unix,
                    config_version=plan.config_version,
                )
            )
        return run

    async def _run(self, run: QueryRun) -> dict[str, Any]:
        """Execute ``run`` within its deadline: its result, or ``QueryFailed``."""
        if run.children:
            return await self._vote(run)
        plan = run.plan
        budget = max(plan.deadline_unix - time.time(), 0.0)
        try:
            decision = await asyncio.wait_for(self._execute(run), timeout=budget)
        except TimeoutError:
            raise QueryFailed(
                "timeout",
                f"query exceeded its {plan.deadline_unix - run.started:.1f}s deadline "
                f"({len(run.outputs)} of {len(plan.nodes) + 1} nodes finished)",
            ) from None
        return self._result(run, "ok" if decision.get("status") == "ok" else "error")

    async def _vote(self, run: QueryRun) -> dict[str, Any]:
        """Run a top-k vote's child runs at once and answer with their voted final answer
        (:func:`~hieramas.controller.vote.combine_votes`: cost summed, latency the slowest);
        a child that fails has no vote, and when none answered the result is the
        best-ranked child's failure."""
        run_id = run.envelope.query_id
        results = await asyncio.gather(*(self._child(run, c) for c in run.children))
        voted = combine_votes(results)
        for key in ("prompt_tokens", "completion_tokens"):
            voted[key] = sum(int(r.get(key) or 0) for r in results)
        rank = voted["winner_rank"]
        if rank is None:
            self.bus.counters["gateway.vote_failed"] += 1
            voted["error"] = f"none of the {len(results)} voting runs answered: {voted['error']}"
            if voted["status"] != "error":  # a failure code: counted as a k=1 query's would be
                self._record_failure(QueryFailed(voted["status"], voted["error"]), run_id)
        winner = run.children[(rank or 1) - 1]
        run.plan, run.assignment = winner.plan, winner.assignment  # the trace's edges, topology
        runs = [
            VoteRun(
                run_id=child.envelope.query_id,
                rank=r,
                edges=_active_edges(child),
                status=str(result.get("status")),
                answer=result.get("answer"),
                score=child.assignment.topology.score if child.assignment.topology else None,
                cost_usd=float(result.get("cost_usd") or 0.0),
                latency_s=float(result.get("latency_s") or 0.0),
            )
            for r, (child, result) in enumerate(zip(run.children, results, strict=True), 1)
        ]
        run.vote = VoteRecord(runs=runs, chosen=rank)
        self.bus.counters["gateway.voted"] += 1
        voted.update(query_id=run_id, vote=msgspec.to_builtins(run.vote))
        return voted

    async def _child(self, parent: QueryRun, run: QueryRun) -> dict[str, Any]:
        """One voting run's result, a failed one included (it then has no vote)."""
        run_id = run.envelope.query_id
        self.runs[run_id] = run
        self.vote_runs += 1
        try:
            return await self._run(run)
        except QueryFailed as exc:
            failed = exc
        except Exception as exc:  # a bug: this run has no vote, the others still answer
            log.exception("query.vote_run_crashed", run_id=run_id)
            failed = QueryFailed("internal", f"the gateway failed: {type(exc).__name__}: {exc}")
        finally:
            self.runs.pop(run_id, None)
            self.vote_runs -= 1
        self.bus.counters[f"gateway.vote_run_failed.{failed.code}"] += 1
        log.info("query.vote_run_failed", run_id=run_id, code=failed.code, reason=str(failed))
        return self._failure_result(failed, run_id, run.envelope.trace_id, parent.started, run)

    def _record_failure(self, exc: QueryFailed, query_id: str) -> None:
        self.bus.counters[f"gateway.failed.{exc.code}"] += 1
        log.warning("query.failed", query_id=query_id, code=exc.code, reason=str(exc))

    def _failure_result(
        self,
        exc: QueryFailed,
        query_id: str,
        trace_id: str,
        started: float,
        run: QueryRun | None,
    ) -> dict[str, Any]:
        """The full result of a failed query (what its nodes did), or a brief one when it has
        no run yet, or even that cannot be built: the failure still reaches the client."""
        if run is not None and exc.code != "internal":
            try:
                return self._result(run, exc.code, error=str(exc))
            except Exception:
                log.exception("query.result_failed", query_id=query_id)
                self.bus.counters["gateway.result_failed"] += 1
        return {
            "status": exc.code,
            "error": str(exc),
            "answer": None,
            "query_id": query_id,
            "trace_id": trace_id,
            "config_version": run.plan.config_version if run else 0,
            "latency_s": time.time() - started,
        }

    def _sendable(self, result: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
        """The result to send and its bytes: a brief ``oversize`` error for one over the limit.

        The bytes are ``None`` (logged and counted) only if not even that can be encoded.
        """
        query_id = str(result["query_id"])
        try:
            return result, self.bus.encode(self._result_envelope(result))
        except WireError as exc:
            failure = QueryFailed(exc.code, f"the query result cannot be sent: {exc}")
        except Exception as exc:  # e.g. a value msgpack cannot carry: still answer
            log.exception("query.result_unencodable", query_id=query_id)
            failure = QueryFailed("internal", f"the query result cannot be encoded: {exc}")
        if result.get("status") == "ok":
            self._record_failure(failure, query_id)
        else:  # counted under its own code already; keep the first reason it failed for
            self.bus.counters["gateway.result_unsendable"] += 1
            failure = QueryFailed(str(result.get("status")), f"{result.get('error')}; {failure}")
        brief = {key: result.get(key) for key in BRIEF_RESULT_KEYS}
        brief.update(status=failure.code, error=str(failure), answer=None)
        try:
            return brief, self.bus.encode(self._result_envelope(brief))
        except Exception as exc:
            self._reply_failed(query_id, exc)
            return brief, None

    def _reply_failed(self, query_id: str, exc: Exception) -> None:
        self.bus.counters["gateway.reply_failed"] += 1
        log.error("query.reply_failed", query_id=query_id, error=str(exc))

    def _result_envelope(self, result: dict[str, Any]) -> Envelope:
        return Envelope(
            kind=Kind.QUERY_RESULT,
            payload=result,
            query_id=str(result["query_id"]),
            trace_id=str(result["trace_id"]),
            config_version=int(result.get("config_version") or 0),
            sender=self.gateway_id,
        )

    async def _plan(self, envelope: Envelope, query_id: str) -> Planned:
        """Validate the query, choose its assignment with its config's planner, freeze its plan."""
        payload = envelope.payload
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise QueryFailed("bad_query", "a query needs a non-empty 'text' string")
        version = payload.get("config_version") or None
        timeout = payload.get("timeout_s")
        if timeout is not None and (
            not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S
        ):  # NaN and infinity too: no timer can wait that long
            raise QueryFailed(
                "bad_query", f"'timeout_s' must be a positive number of at most {MAX_TIMEOUT_S:.0f}"
            )
        item_id = payload.get("item_id")
        if item_id is not None and not isinstance(item_id, str):
            raise QueryFailed("bad_query", "'item_id' must be a string")
        explore = payload.get("explore", False)
        if not isinstance(explore, bool):
            raise QueryFailed("bad_query", "'explore' must be true or false")
        try:
            stored = await self.store.get(int(version) if version else None)
        except KeyError as exc:
            raise QueryFailed("no_config", str(exc.args[0])) from None
        except CorruptConfigError as exc:
            raise QueryFailed("corrupt_config", str(exc)) from None
        config = stored.config
        domain = str(payload.get("domain") or config.domain)
        if domain != config.domain:  # the workers would refuse a plan they cannot prompt
            _check_domain(domain, [node.role for node in config.supernodes.values()])
        spec = self._planner_spec(config)
        planner = self.planner if spec is None else await self._planner_of(spec)
        request = PlanRequest(
            task_text=text, domain=domain, query_id=query_id, item_id=item_id, explore=explore
        )
        assignment = await self._assign(planner, config, request)
        try:

            def frozen(chosen: Assignment, run_id: str) -> Plan:
                return build_plan(
                    config,
                    stored.version,
                    chosen,
                    query_id=run_id,
                    task_text=text,
                    domain=domain,
                    timeout_s=float(timeout) if timeout else None,
                    emulator_url=self.emulator_url,
                    answerless_roles=tuple(self._answerless(domain)) if self._answerless else (),
                    meta={"item_id": item_id} if item_id else None,
                )

            plan = frozen(assignment, query_id)
            votes = tuple(  # a vote's runs: same deadline, their own ids
                replace(frozen(a, _vote_run_id(query_id, r)), deadline_unix=plan.deadline_unix)
                for r, a in enumerate(assignment.vote, 1)
            )
            record = assignment_record(config, assignment)
            return Planned(plan, assignment, record, planner.kind, votes)
        except ConfigError as exc:
            raise QueryFailed("bad_config", str(exc)) from None

    async def _arm(self, run: QueryRun, nodes: list[str]) -> bool:
        """Arm ``nodes`` for ``run``, recording where each runs; True if they started already.

        Nodes of different worker groups are armed in parallel; a reply says ``started``
        when its worker armed the whole query and so needs no routes.
        """
        by_group: dict[str | None, list[str]] = {}
        for node in nodes:
            by_group.setdefault(run.plan.group_of(node), []).append(node)
        started = await asyncio.gather(
            *(self._arm_group(run, group, todo) for group, todo in by_group.items())
        )
        return any(started)

    async def _arm_group(self, run: QueryRun, group: str | None, todo: list[str]) -> bool:
        started = False
        while todo:
            try:
                armed = read(await self._activate(run, group, todo), NodeArmed)
            except WireError as exc:
                raise QueryFailed("arm_bad_reply", f"node {todo[0]!r}: {exc}") from None
            if not self.subjects.is_instance(armed.inbox):
                raise QueryFailed("arm_bad_reply", f"{armed.inbox!r} is not a worker inbox")
            hosted = armed.nodes or [todo[0]]
            if todo[0] not in hosted:
                raise QueryFailed("arm_bad_reply", f"node {todo[0]!r}: the worker did not arm it")
            inbox, worker = armed.inbox, armed.worker
            if self.liveness is not None:
                self.liveness.expect(worker)
            for node in hosted:
                if node in todo:
                    run.routes[node] = inbox
                    run.workers[node] = worker
            started = started or armed.started
            todo = [n for n in todo if n not in hosted]
        return started

    async def _activate(self, run: QueryRun, group: str | None, nodes: list[str]) -> Envelope:
        """One activation request for ``nodes``, to the queue group of the first of them."""
        plan, node = run.plan, nodes[0]
        activation = NodeActivate(plan=run.plan, node=node, nodes=nodes, gateway=self.inbox)
        envelope = run.envelope.reply(
            Kind.NODE_ACTIVATE, payload(activation), sender=self.gateway_id
        )
        subject = self.subjects.activate(node, group)
        timeouts, pause = 0, NO_WORKER_FIRST_WAIT_S
        while True:
            timeout = min(ARM_TIMEOUT_S, max(plan.deadline_unix - time.time(), 0.01))
            try:
                return await self.bus.arequest(subject, envelope, timeout)
            except BusError as exc:
                timeouts += exc.code == "timeout"
                if exc.code == "timeout" and timeouts == 1:
                    continue  # a worker that died holding the request never answers
                if exc.code == "no_responders" and pause <= NO_WORKER_LAST_WAIT_S:
                    await asyncio.sleep(pause)  # workers subscribing again after a reconnect
                    pause *= 2
                    continue
                code = "no_worker" if exc.code == "no_responders" else "arm_" + exc.code
                raise QueryFailed(code, f"node {node!r}: {exc}") from None
            except RemoteError as exc:
                raise QueryFailed(exc.code, f"node {node!r}: {exc.detail}") from None

    async def _execute(self, run: QueryRun) -> dict[str, Any]:
        started = await self._arm(run, [*run.plan.nodes, DECISION_NODE])
        if not started:
            await self._send_routes(run, list(run.routes))
        run.routed, run.progress = True, time.monotonic()
        return await run.done

    async def _send_routes(self, run: QueryRun, nodes: list[str]) -> None:
        """Tell ``nodes`` where every node runs: one message per worker inbox, not per node."""
        at: dict[str, list[str]] = {}
        for node in nodes:
            at.setdefault(run.routes[node], []).append(node)
        for inbox, hosted in at.items():
            routes = payload(NodeRoutes(node=hosted[0], nodes=hosted, routes=run.routes))
            await self.bus.apublish(
                inbox, run.envelope.reply(Kind.NODE_ROUTES, routes, sender=self.gateway_id)
            )

    def _result(self, run: QueryRun, status: str, *, error: str | None = None) -> dict[str, Any]:
        plan = run.plan
        decision = run.outputs.get(DECISION_NODE, {})
        nodes = {
            name: {
                k: out.get(k)
                for k in (
                    "role", "status", "answer", "text", "error", "failures", "models",
                    "latency_s", "started", "finished", "cost_usd", "prompt_tokens",
                    "completion_tokens", "worker", "calls", "vote",
                )
            }
            for name, out in run.outputs.items()
            if name != DECISION_NODE
        }  # fmt: skip
        outputs = list(run.outputs.values())
        failures = [f"{o.get('node')}: {f}" for o in outputs for f in (o.get("failures") or [])]
        if error is None and decision.get("status") == "error":
            error = str(decision.get("error"))
        return {
            "status": status,
            "error": error,
            "answer": decision.get("answer"),
            "text": decision.get("text"),
            "decided_by": decision.get("decided_by"),
            "query_id": run.envelope.query_id,
            "trace_id": run.envelope.trace_id,
            "config_version": plan.config_version,
            "domain": plan.domain,
            "item_id": plan.meta.get("item_id"),
            "planner": run.planner,
            "policy_version": run.assignment.policy_version,
            "sampled": run.assignment.sampled,
            "emulated": plan.emulated,
            "cost_usd": sum(float(o.get("cost_usd") or 0.0) for o in outputs),
            "prompt_tokens": sum(int(o.get("prompt_tokens") or 0) for o in outputs),
            "completion_tokens": sum(int(o.get("completion_tokens") or 0) for o in outputs),
            "latency_s": time.time() - run.started,
            "skipped_nodes": list(plan.skipped_nodes),
            "failures": failures,
            "decision": {k: v for k, v in decision.items() if k != "text"} or None,
            "nodes": nodes,
        }


def _query_event(
    result: dict[str, Any],
    run: QueryRun | None,
    asked: Envelope,
    started: float,
    caller: CallerSpan | None,
) -> QueryDone:
    """The ``query`` trace event of a finished query's result (a full or a brief one), with
    what its run knows: the item, the full assignment, the active edges, the policy, and the
    caller's span when the query carried a ``traceparent``."""
    plan = run.plan if run is not None else None
    return QueryDone(
        query_id=str(result["query_id"]),
        trace_id=str(result.get("trace_id") or ""),
        span_id=new_id(),
        parent_span=caller.span_id if caller is not None else "",
        started=started,
        finished=time.time(),
        config_version=int(result.get("config_version") or 0),
        status=str(result["status"]),
        error=result.get("error"),
        answer=result.get("answer"),
        text=result.get("text"),
        decided_by=result.get("decided_by"),
        domain=plan.domain if plan is not None else result.get("domain"),
        item_id=plan.meta.get("item_id") if plan is not None else _item_id(asked),
        emulated=bool(result.get("emulated")),
        cost_usd=float(result.get("cost_usd") or 0.0),
        prompt_tokens=int(result.get("prompt_tokens") or 0),
        completion_tokens=int(result.get("completion_tokens") or 0),
        latency_s=float(result.get("latency_s") or 0.0),
        skipped_nodes=list(result.get("skipped_nodes") or []),
        failures=list(result.get("failures") or []),
        planner=run.planner if run is not None else None,
        policy_version=run.assignment.policy_version if run is not None else None,
        sampled=run.assignment.sampled if run is not None else False,
        assignment=run.record if run is not None else None,
        edges=_active_edges(run) if run is not None else [],
        vote=run.vote if run is not None else None,
        **_policy_fields(run),
    )


def _policy_fields(run: QueryRun | None) -> dict[str, Any]:
    """What a learner needs of a policy-planned query: the text it read and, for a sampled
    plan, the temperature and per-slot log-probabilities it was drawn with and the query
    embedding the policy read; and how a Stage-2 planner chose the DAG."""
    if run is None or run.assignment.policy_version is None:
        return {}
    log_probs = run.assignment.log_probs
    return {
        "task_text": run.plan.task_text,
        "temperature": run.assignment.temperature,
        "log_probs": list(log_probs) if log_probs is not None else None,
        "query_embedding": run.assignment.query_embedding,
        "embedder": run.assignment.embedder,
        "topology": run.assignment.topology,
    }


def _check_domain(domain: str, roles: list[str]) -> None:
    """``QueryFailed`` (``bad_query``) unless ``domain`` is known and has all of ``roles``."""
    from hieramas.tasks import prompts

    try:
        known = set(prompts.roles(domain))
    except ValueError as exc:
        raise QueryFailed("bad_query", str(exc)) from None
    unknown = sorted(set(roles) - known)
    if unknown:
        raise QueryFailed("bad_query", f"domain {domain!r} has no role(s) {unknown}")


def _item_id(asked: Envelope) -> str | None:
    """The item a query that failed before planning asked about, if it named one properly."""
    item_id = asked.payload.get("item_id")
    return item_id if isinstance(item_id, str) else None


def _vote_run_id(query_id: str, rank: int) -> str:
    """The wire id of a top-k vote's run of rank ``rank`` (its workers key it by this)."""
    return f"{query_id}-v{rank}"


def _active_edges(run: QueryRun) -> list[tuple[str, str]]:
    """The assignment's edges between supernodes the plan kept, in the assignment's order."""
    nodes = run.plan.nodes
    return [(s, d) for s, d in run.assignment.edges if s in nodes and d in nodes]
