"""pykka actors whose messages are handled on the process's asyncio loop (no thread per actor).

``pykka.ThreadingActor`` gives every actor a thread, so every ``tell`` wakes a
thread that then competes for the GIL with the NATS loop; with ~100 hand-offs
per query that dominated the runtime's CPU.  :class:`LoopActor` is a pykka actor
type (pykka's documented extension points: ``_create_actor_inbox``,
``_create_future``, ``_start_actor_loop``) whose inbox is drained by the bus's
event loop instead: the same actor model — one message at a time, state touched
only by its own handler, ``ActorRef.tell``/``ask``/``stop`` and the registry —
without the thread switches.  A message told by a plain loop callback (a NATS
delivery, a request's reply) is handled at once, in that callback, rather than a
loop turn later; one told from inside a handler waits for the next turn, so
handlers never nest.  Handlers must never block (ours only start
coroutines and publish), and ``ask(...).get()`` must never be called on the loop.

``HIERAMAS_ACTOR_DISPATCH=threads`` gives every actor its own thread again
(pykka's classic behaviour), for comparison in ``bench/overhead.py``.

**Supervision.** An exception escaping a handler is a bug (message content is checked
before it reaches an actor).  The actor then fails what it holds explicitly
(:meth:`LoopActor.on_crash`: a node ends its in-flight queries with an error at once),
stops, and hands the messages still in its inbox to its :class:`Supervisor` (the worker),
which starts a fresh actor in its place and gives them to it.  An idle actor told
:class:`Retire` stops the same way, so that a worker's actors do not accumulate.
"""

from __future__ import annotations

import asyncio
import collections
import os
import queue
import sys
import threading
from collections.abc import Callable
from itertools import count
from types import TracebackType
from typing import Any, Protocol, cast

import pykka
import structlog
from pykka import ThreadingFuture

from hieramas.logs import QUERY_CONTEXT

__all__ = ["DISPATCH_ENV", "LoopActor", "Retire", "Supervisor", "dispatch_mode"]

log = structlog.get_logger(__name__)

DISPATCH_ENV = "HIERAMAS_ACTOR_DISPATCH"
_BATCH = 64  # messages handled per loop turn before yielding to I/O
_PYKKA_MESSAGES = (
    pykka.messages._ActorStop,  # how pykka stops an actor
    pykka.messages.ProxyCall,
    pykka.messages.ProxyGetAttr,
    pykka.messages.ProxySetAttr,
)
"""pykka's own messages, which its ``_handle_receive`` handles; every other goes to
``on_receive`` directly."""
_names = count()


class _Handling(threading.local):
    depth = 0  # actor drains running on this thread right now


_handling = _Handling()


def dispatch_mode() -> str:
    """``"loop"`` (default) or ``"threads"``, from ``$HIERAMAS_ACTOR_DISPATCH``."""
    mode = os.environ.get(DISPATCH_ENV, "loop").strip().lower() or "loop"
    if mode not in ("loop", "threads"):
        raise ValueError(f"{DISPATCH_ENV} must be 'loop' or 'threads', not {mode!r}")
    return mode


class _Inbox:
    """A FIFO that either wakes a blocked reader thread or schedules a drain on a loop."""

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()  # the loop's paths take it bare: no Condition wrapper
        self._cond = threading.Condition(self._lock)  # for a reader thread (``threads`` mode)
        self._wake: Callable[[], None] | None = None
        self._scheduled = False

    def bind(self, wake: Callable[[], None]) -> None:
        """From now on every put schedules ``wake`` (once until :meth:`rearm`)."""
        with self._lock:
            self._wake = wake
            self._scheduled = True  # the caller drains right after binding

    def rearm(self) -> None:
        """A drain starts: the next put schedules another one."""
        with self._lock:
            self._scheduled = False

    def claim(self) -> bool:
        """True (and marked scheduled) if items wait and no drain is scheduled yet."""
        with self._lock:
            if self._items and not self._scheduled:
                self._scheduled = True
                return True
            return False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            self._items.append(item)
            wake = self._wake
            if wake is None:
                self._cond.notify()
                return
            if self._scheduled:
                return
            self._scheduled = True
        wake()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._cond:
            while not self._items:
                if not block or not self._cond.wait(timeout):
                    raise queue.Empty
            return self._items.popleft()

    def take(self) -> Any:
        """The next item, or ``None`` when empty (the loop's drain: no exception per drain).

        No lock: the drain is the only reader, and a deque's append and popleft are atomic;
        the lock guards ``_scheduled``, which :meth:`rearm` resets before the drain reads."""
        items = self._items
        return items.popleft() if items else None

    def empty(self) -> bool:
        return not self._items


class Retire:
    """Stop if idle (:meth:`LoopActor.idle`) and nothing waits in the inbox."""


class Supervisor(Protocol):
    """Whoever starts actors, and replaces one that crashed or retired."""

    def actor_crashed(
        self, ref: pykka.ActorRef[Any], error: BaseException, pending: list[object]
    ) -> None:
        """``ref`` crashed on ``error`` and stopped; ``pending``: the messages it left."""

    def actor_retired(self, ref: pykka.ActorRef[Any], pending: list[object]) -> None:
        """``ref`` stopped when told to retire; ``pending``: messages that came meanwhile."""


class LoopActor(pykka.Actor):
    """A pykka actor driven by ``loop`` (normally the bus loop that owns NATS)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, supervisor: Supervisor | None = None
    ) -> None:
        super().__init__()
        self._loop = loop
        self._loop_thread: int | None = None
        self._supervisor = supervisor
        self._current: object = None  # the message being handled (for on_crash)

    # -- supervision -------------------------------------------------------------------
    def idle(self) -> bool:
        """Holds nothing that would be lost if it stopped now (default: always)."""
        return True

    def on_crash(self, message: object, error: BaseException) -> None:
        """Fail explicitly whatever this actor holds; it is about to stop after ``error``,
        raised while handling ``message``."""

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, Retire):
            self._retire()
            return None
        self._current = message
        # bound here, in the thread or loop turn that handles it, and reset after: what the
        # handler logs, and the tasks it starts, carry the query, its trace and the node
        # (worked out by log_ids only when a line is logged: this runs for every message)
        bound = QUERY_CONTEXT.set((self, message))
        try:
            if isinstance(message, _PYKKA_MESSAGES):  # stop, proxy calls: pykka's own
                return super()._handle_receive(message)
            return self.on_receive(message)  # ours: straight to the handler
        finally:
            QUERY_CONTEXT.reset(bound)

    def log_ids(self, message: object) -> tuple[str | None, str | None]:
        """The query id and trace id ``message`` is about, for the log context (a finished
        call's message names only its query: its trace comes from the node's run)."""
        envelope = getattr(message, "envelope", None) or getattr(message, "activation", None)
        if envelope is not None:
            return envelope.query_id or None, envelope.trace_id or None
        query_id = getattr(message, "query_id", None)
        if query_id is None:
            return None, None
        run = getattr(self, "runs", {}).get(query_id)
        activation = getattr(run, "activation", None)
        return query_id, getattr(activation, "trace_id", None) or None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """pykka calls this after an exception escaped a handler (and stopped the actor)."""
        error = exception_value or RuntimeError("unknown failure")
        try:
            self.on_crash(self._current, error)
        except Exception:
            log.exception("actor.crash_handling_failed", actor=type(self).__name__)
        pending = self._take_pending()
        if self._supervisor is not None:
            self._supervisor.actor_crashed(self.actor_ref, error, pending)

    def _retire(self) -> None:
        if not self.idle() or not self._inbox.empty():
            return
        self._stop()
        pending = self._take_pending()
        if self._supervisor is not None:
            self._supervisor.actor_retired(self.actor_ref, pending)

    def _take_pending(self) -> list[object]:
        """Empty the inbox: the messages told (asks get ``ActorDeadError``)."""
        pending: list[object] = []
        while (envelope := self._inbox.take()) is not None:
            if envelope.reply_to is None:
                pending.append(envelope.message)
            else:
                dead = pykka.ActorDeadError(f"{self.actor_ref} stopped before handling it")
                envelope.reply_to.set_exception(exc_info=(type(dead), dead, None))
        return pending

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return ThreadingFuture()

    @property
    def _inbox(self) -> _Inbox:
        return cast(_Inbox, self.actor_inbox)

    def _start_actor_loop(self) -> None:
        if dispatch_mode() == "threads":
            name = f"{type(self).__name__}-{next(_names)}"
            threading.Thread(target=self._actor_loop, name=name).start()
            return
        self._loop.call_soon_threadsafe(self._begin)

    # -- loop dispatch -----------------------------------------------------------------
    def _begin(self) -> None:
        self._loop_thread = threading.get_ident()
        self._inbox.bind(self._schedule)
        self._actor_loop_setup()
        self._drain()

    def _schedule(self) -> None:
        # the common case first: told on the loop's thread by a plain callback (a NATS
        # message, a reply), handled at once, no loop turn
        loop = self._loop
        if threading.get_ident() == self._loop_thread:
            if not _handling.depth:
                self._drain()
            elif loop.is_running():
                loop.call_soon(self._drain)  # told from a handler: never nest handlers
            else:
                self._drain()  # the loop is gone (shutdown): nothing else will drain
        elif loop.is_closed() or not loop.is_running():
            self._drain()  # the loop is gone (shutdown): nothing else will drain; answer here
        else:
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        handling = _handling
        handling.depth += 1
        try:
            self._drain_batch()
        finally:
            handling.depth -= 1

    def _drain_batch(self) -> None:
        inbox = self._inbox
        stopped = self.actor_stopped
        inbox.rearm()  # puts from now on schedule another drain
        for _ in range(_BATCH):
            if stopped.is_set():
                self._actor_loop_teardown()
                return
            envelope = inbox.take()
            if envelope is None:  # pykka never queues None: its envelopes wrap messages
                return
            self._handle_envelope(envelope)
        if stopped.is_set():
            self._actor_loop_teardown()
        elif inbox.claim():  # a full batch: yield to I/O, then go on
            self._schedule()

    def _handle_envelope(self, envelope: Any) -> None:
        """pykka's per-message step (``Actor._actor_loop_running``), for one envelope."""
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            self._stop()
            pykka.ActorRegistry.stop_all(block=False)
            raise
