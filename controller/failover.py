"""Gateway failover: every in-flight query's state in NATS, and a survivor that adopts the
queries of a gateway that died.

Every controller runs a gateway, and the gateways share the query queue group, so a query
goes to one of them.  Each gateway

* writes one record per query it runs to the JetStream key-value bucket
  ``hieramas_queries`` (key ``q.<query id>``): the query as asked, its ids, the client's reply
  subject, its deadline, its config version and its owner (the gateway).  The record
  carries a per-message TTL of its deadline plus a margin (so one whose owner died with
  nobody to adopt it vanishes by itself), and a finished query's record is purged with a
  marker that itself expires a second later: nothing piles up.  Both are plain publishes on
  the bucket's subjects, without waiting for JetStream's acknowledgement: two messages per
  query, no round trip, no read (a write that JetStream refuses, e.g. with no quorum, only
  costs that query its failover).
* announces itself every second on ``<prefix>.gw.hello`` and follows the others
  (:class:`~hieramas.liveness.Liveness`).
* when a peer falls silent for :data:`DEAD_AFTER_S` (or says goodbye), and periodically for
  owners it has not heard at all (a controller that died alone and was restarted, say),
  claims each of the lost owner's records by compare-and-set on the record's revision (so one
  survivor takes each query) and hands the query to its own gateway, which runs it again to
  the same deadline and answers the client's reply subject.

Why run it again rather than pick up where the dead gateway was: its nodes' outputs went
to the dead gateway's own inbox and are gone with it, and a worker keeps a finished node's
output only for a while; the record alone is enough to run the query again, and since every
receiver keeps the first copy of a node's output, what the first run still sends does no
harm.  The price is the query's LLM calls, paid twice (and a sampling planner may draw
another plan).  Failing fast instead would throw away the rest of the deadline.

A query that reaches a gateway in the instant it dies, before its record is written, is
not lost: its client sends it again (same query id, marked :data:`RESENT`) while no answer
comes, and a gateway that is not running it looks up its record (:meth:`Failover.lookup`)
first: a record owned by a live gateway means that gateway answers, one owned by a dead
gateway is adopted here, and no record means nobody runs it, so this gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_OP, KV_PURGE, KeyValue

from hieramas.bus import Bus
from hieramas.liveness import HEARTBEAT_S, Liveness
from hieramas.natsconn import jetstream_replicas
from hieramas.wire import Envelope, Kind, Subjects, new_id
from hieramas.wire.messages import WorkerHello, payload

__all__ = [
    "DEAD_AFTER_S",
    "QUERY_BUCKET",
    "RESENT",
    "Failover",
    "QueryState",
]

log = structlog.get_logger(__name__)

QUERY_BUCKET = "hieramas_queries"
DEAD_AFTER_S = 3.5 * HEARTBEAT_S
"""A gateway silent this long is dead: its queries are adopted."""
TTL_MARGIN_S = 30.0
"""A query's record outlives its deadline by this much (then the server drops it)."""
SWEEP_EVERY_S = 10.0
"""How often a gateway looks for records of owners it does not hear (after its first
:data:`DEAD_AFTER_S`, by which time it has heard every live peer)."""
WRITE_TIMEOUT_S = 5.0
RESENT = "resent"
"""The ``span_id`` of a query its client sends again (the first send has none)."""
_KEYABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A query id usable as a record key as it is (a client's id may be anything)."""
MSG_TTL, ROLLUP, ROLLUP_SUBJECT = "Nats-TTL", "Nats-Rollup", "sub"  # JetStream's headers

Resume = Callable[["QueryState", str], None]
"""The gateway's hook: run an adopted query (its state and its record's key)."""


class QueryState(msgspec.Struct, kw_only=True, frozen=True):
    """The record of one in-flight query: enough for another gateway to run it to its end."""

    query_id: str
    trace_id: str
    owner: str
    """The gateway that runs it."""
    reply: str | None = None
    """The client's reply subject (``None``: nobody waits for the result)."""
    request: dict[str, Any]
    """The query's payload as the client sent it."""
    sender: str = ""
    started: float
    deadline: float
    config_version: int = 0
    adopted_from: list[str] = []
    """Gateways that owned it before and died, oldest first."""


class Failover:
    """One gateway's part in failover: its query records, its heartbeats, adoption."""

    def __init__(
        self,
        bus: Bus,
        subjects: Subjects,
        gateway_id: str,
        inbox: str,
        resume: Resume,
        *,
        bucket: str = QUERY_BUCKET,
        dead_after_s: float = DEAD_AFTER_S,
        hello_every_s: float = HEARTBEAT_S,
        sweep_every_s: float = SWEEP_EVERY_S,
    ) -> None:
        self.bus = bus
        self.subjects = subjects
        self.gateway_id = gateway_id
        self.inbox = inbox
        self.bucket = bucket
        self.hello_every_s = hello_every_s
        self.sweep_every_s = sweep_every_s
        self.peers = Liveness(
            bus, subjects, dead_after_s=dead_after_s, subject=subjects.gateway_hello,
            label="gateway",
        )  # fmt: skip
        self.peers.on_lost(self._on_peer_lost)
        self._resume = resume
        self._kv: KeyValue | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started = 0.0

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the bucket, start hearing and greeting peers, and look for orphans later."""
        try:
            self._kv = await self.bus.js.key_value(self.bucket)
        except Exception:
            self._kv = await self.bus.js.create_key_value(
                KeyValueConfig(
                    bucket=self.bucket,
                    history=1,
                    description="HieraMAS in-flight queries (gateway failover)",
                    replicas=jetstream_replicas(),
                )
            )
        await self.peers.start()
        await self._hello()
        self._started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._hello_loop()), loop.create_task(self._sweep_loop())]

    async def stop(self) -> None:
        """Say goodbye (peers adopt what this gateway still holds) and stop."""
        for task in self._loops:
            task.cancel()
        await self.peers.stop()
        with contextlib.suppress(Exception):
            await self._hello("bye")

    # -- records ---------------------------------------------------------------------
    def begin(self, state: QueryState) -> str:
        """Record a query this gateway starts; returns its key (for :meth:`end`). On the loop."""
        key = self.key(state.query_id) or f"q.{new_id()}"
        ttl = max(state.deadline - time.time(), 0.0) + TTL_MARGIN_S
        self._publish(key, msgspec.msgpack.encode(state), {MSG_TTL: str(int(ttl))})
        return key

    @staticmethod
    def key(query_id: str) -> str | None:
        """The record key of ``query_id`` (``None``: not usable as a key)."""
        return f"q.{query_id}" if _KEYABLE.fullmatch(query_id) else None

    async def lookup(self, query_id: str) -> QueryState | None:
        """The live record of ``query_id``, if any (an unreadable one counts as none)."""
        key = self.key(query_id)
        if key is None:
            return None
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        try:
            return msgspec.msgpack.decode(entry.value or b"", type=QueryState)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.bus.counters["failover.bad_record"] += 1
            return None

    def end(self, key: str) -> None:
        """The query is answered: drop its record (and, a second later, the marker). On the
        loop.  The same connection sent the record first, so the server has it by then."""
        self._publish(key, b"", {KV_OP: KV_PURGE, ROLLUP: ROLLUP_SUBJECT, MSG_TTL: "1"})

    def _publish(self, key: str, data: bytes, headers: dict[str, str]) -> None:
        self.bus.spawn_eager(self._send(f"$KV.{self.bucket}.{key}", data, headers))

    async def _send(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self.bus.nc.publish(subject, data, headers=headers)
        except Exception as exc:  # the connection is closing: that query goes without
            self.bus.counters["failover.write_failed"] += 1
            log.warning("failover.write_failed", subject=subject, error=str(exc))

    async def _claim(self, key: str, state: QueryState, last: int) -> int | None:
        """Compare-and-set ``key`` from revision ``last`` to ``state``: the new revision;
        ``KeyWrongLastSequenceError`` if another survivor was first, ``None`` if it failed."""
        ttl = max(state.deadline - time.time(), 0.0) + TTL_MARGIN_S
        headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
        try:
            ack = await self.bus.js.publish(
                f"$KV.{self.bucket}.{key}",
                msgspec.msgpack.encode(state),
                timeout=WRITE_TIMEOUT_S,
                headers=headers,
                msg_ttl=ttl,
            )
        except Exception as exc:
            if getattr(exc, "err_code", None) in (10071, 10164):
                raise KeyWrongLastSequenceError() from None  # another survivor claimed it
            self.bus.counters["failover.claim_failed"] += 1
            log.warning("failover.claim_failed", key=key, error=f"{type(exc).__name__}: {exc}")
            return None
        return int(ack.seq)

    @property
    def settled(self) -> bool:
        """Has this gateway listened long enough to have heard every live peer?"""
        return time.monotonic() - self._started >= self.peers.dead_after_s

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("Failover.start() was not awaited")
        return self._kv

    # -- peers and adoption ----------------------------------------------------------
    async def _hello(self, status: str = "alive") -> None:
        hello = WorkerHello(
            status="bye" if status == "bye" else "alive",
            worker=self.gateway_id,
            nodes=[],
            inbox=self.inbox,
        )
        envelope = Envelope(kind=Kind.WORKER_HELLO, payload=payload(hello), sender=self.gateway_id)
        await self.bus.apublish(self.subjects.gateway_hello, envelope)

    async def _hello_loop(self) -> None:
        while True:
            await asyncio.sleep(self.hello_every_s)
            try:
                await self._hello()
            except Exception as exc:
                log.warning("failover.hello_failed", error=str(exc))

    async def _sweep_loop(self) -> None:
        await asyncio.sleep(self.peers.dead_after_s)  # by then every live peer has been heard
        while True:
            try:
                await self.adopt(None)
            except Exception as exc:
                self.bus.counters["failover.sweep_failed"] += 1
                log.warning("failover.sweep_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.sweep_every_s)

    def _on_peer_lost(self, peer: str) -> None:
        if peer != self.gateway_id:
            self._spawn(self.adopt(peer))

    async def adopt(self, owner: str | None) -> int:
        """Claim and resume the queries of ``owner`` (``None``: of every owner not heard
        now, this gateway excepted); returns how many this gateway took."""
        taken = 0
        for key, state, revision in await self._records():
            if state.owner == self.gateway_id:
                continue
            if owner is not None and state.owner != owner:
                continue
            if owner is None and self.peers.alive(state.owner):
                continue
            claimed = msgspec.structs.replace(
                state,
                owner=self.gateway_id,
                adopted_from=[*state.adopted_from, state.owner],
            )
            try:
                if await self._claim(key, claimed, revision) is None:
                    continue
            except KeyWrongLastSequenceError:
                self.bus.counters["failover.claim_lost"] += 1  # another survivor has it
                continue
            self.bus.counters["failover.adopted"] += 1
            log.warning("query.adopted", query_id=state.query_id, lost_gateway=state.owner, key=key)
            taken += 1
            try:
                self._resume(claimed, key)
            except Exception:
                log.exception("failover.resume_failed", query_id=state.query_id)
        return taken

    async def _records(self) -> list[tuple[str, QueryState, int]]:
        """Every live record: (key, state, revision); unreadable ones are counted and skipped."""
        watcher = await self.kv.watch("q.*", ignore_deletes=True)
        found: list[tuple[str, QueryState, int]] = []
        try:
            while True:
                entry = await watcher.updates(timeout=WRITE_TIMEOUT_S)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                try:
                    state = msgspec.msgpack.decode(entry.value or b"", type=QueryState)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.bus.counters["failover.bad_record"] += 1
                    log.warning("failover.bad_record", key=entry.key, error=str(exc))
                    continue
                found.append((entry.key, state, int(entry.revision or 0)))
                if not entry.delta:
                    break
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return found

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
