"""The per-process bridge between pykka actors and one asyncio loop that owns NATS.

pykka futures block when awaited, so actors never await anything: they hand
coroutines to :meth:`Bus.submit`, or send requests with :meth:`Bus.request`,
and receive the outcome as a plain callback (which they turn into a ``tell``
to themselves).  Requests share one reply subscription per connection and
resolve straight from it: no task, future or timeout wrapper per request.  A
publish from the loop runs at once rather than as a task
(:meth:`Bus.spawn_eager`).  Subscriptions decode every message once, on the
loop, and reject garbled ones with a logged, counted, typed error (and an
``error`` reply when the sender waits for one); they are handled as nats-py
parses them, without its per-subscription queue and task
(:mod:`hieramas.natsdelivery`).  The loop is uvloop's where
installed (``HIERAMAS_UVLOOP=0`` for asyncio's own), and the actors themselves
are drained by it (:mod:`hieramas.actors.dispatch`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import os
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, NamedTuple, TypeVar

import nats
import nats.errors
import pykka
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hieramas import metrics
from hieramas.natsconn import NatsSettings
from hieramas.natsdelivery import deliver_directly
from hieramas.wire import Envelope, Kind, WireError, decode, encode

__all__ = [
    "Bus",
    "BusError",
    "Handler",
    "RecordHandler",
    "RemoteError",
    "ReplyCallback",
    "error_envelope",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")
Handler = Callable[[Envelope, str | None], None]
"""A subscription callback: the decoded envelope and the reply subject (if any). Runs on the loop."""
RecordHandler = Callable[[Envelope, Any], None]
"""Takes a message handed over in process: its envelope, and its payload's typed record."""
ReplyCallback = Callable[[Envelope | BaseException], None]
"""Gets a request's reply envelope, or the error (:class:`BusError`, :class:`RemoteError`,
:class:`WireError`). Runs on the loop."""
NO_RESPONDERS = "503"  # the status header the server puts on a request nobody subscribes to
RESEND_AFTER_RECONNECT_S = 1.0
"""A request marked ``resend`` goes out again this long after a reconnect (by then the other
processes have reconnected and subscribed again, most likely)."""
RESEND_MAX_S = 8.0
"""The longest wait between two periodic sends of a request (``again_after``): it doubles
from ``again_after`` up to this."""
_VIOLATION = re.compile(
    r'permissions violation for (publish|subscription)(?: with reply of)?(?: to)? "([^"]*)"'
)
"""nats-server's ``-ERR`` for a refused publish, subscription or reply subject (nats-py
lower-cases it and hands it to the error callback; the connection stays up)."""


class _Waiting(NamedTuple):
    """A request waiting for its reply."""

    done: ReplyCallback
    timer: asyncio.TimerHandle
    subject: str
    timeout: float
    resend: bytes | None = None
    """The request's bytes, kept to send it again after a reconnect (``resend=True``)."""


class BusError(RuntimeError):
    """A request that could not be delivered or answered (no responders, timeout, closed,
    permission_denied: the server refused this login the subject)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RemoteError(RuntimeError):
    """The other side answered with an ``error`` envelope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed and not disabled (``HIERAMAS_UVLOOP=0``), else asyncio's loop."""
    if os.environ.get("HIERAMAS_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Bus:
    """One NATS connection and the loop thread that owns it."""

    def __init__(self, settings: NatsSettings, *, sender: str = "") -> None:
        self.settings = settings
        self.sender = sender or settings.name
        self.counters: Counter[str] = Counter()
        metrics.track("bus", self)  # read at scrape time
        self.loop = _new_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"bus-{self.sender}", daemon=True
        )
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._last_error = ""
        self._auth_error = ""  # kept apart: a retry's "connection reset" must not hide it
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply_prefix = ""
        self._max_payload = 0  # the server's, read at connect (a property read per encode cost 1%)
        self._reply_seq = itertools.count()
        self._pending: dict[str, _Waiting] = {}
        self._local: dict[str, Handler] = {}  # subjects served in this process (serve_locally)
        self._local_records: dict[str, RecordHandler] = {}  # ... that also take records
        # nats-py's own requests in flight, by subject: a token per request, and its task
        self._refusable: dict[str, dict[object, asyncio.Task[Any]]] = {}
        self._refused: set[object] = set()  # tokens of those the server refused
        self._loop_ident: int | None = None  # the loop thread's id, once it runs

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Bus:
        """Start the loop thread and connect; :class:`BusError` if NATS is unreachable or refuses."""
        self._thread.start()
        try:
            self.call(asyncio.wait_for(self._connect(), timeout), timeout=timeout + 1)
        except Exception as exc:  # refused, unreachable, timed out: one clear error
            reason = self.connect_failure(exc)
            self.stop()
            raise BusError(
                "connect", f"cannot connect to NATS at {self.settings.redacted_url()}: {reason}"
            ) from None
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Drain the connection and stop the loop thread."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self._close(), timeout=timeout)
        except Exception as exc:  # closing is best effort
            log.warning("bus.close_failed", error=str(exc))
        try:
            self.call(self._cancel_tasks(), timeout=timeout)
        except Exception as exc:
            log.warning("bus.cancel_failed", error=str(exc))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run_loop(self) -> None:
        self._loop_ident = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self._loop_ident = None  # a later thread may get the same id

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **self.settings.connect_kwargs(),
        )
        self._nc.request = self._refusable_request(self._nc.request)  # type: ignore[method-assign]
        self._js = self._nc.jetstream()
        self._max_payload = int(self._nc.max_payload)
        self._reply_prefix = self._nc.new_inbox() + "."  # honours a configured inbox prefix
        replies = await self._nc.subscribe(
            self._reply_prefix + "*", cb=self._on_reply, pending_msgs_limit=200_000
        )
        deliver_directly(replies, self._take_reply, self.counters)
        log.info("bus.connected", url=self.settings.redacted_url(), sender=self.sender)

    async def _close(self) -> None:
        self._closing = True  # the disconnect that follows is ours, not a fault
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=3)
            except Exception:
                await self._nc.close()
        for token in list(self._pending):
            self._resolve(token, BusError("closed", "the bus closed before the reply came"))

    def connect_failure(self, exc: BaseException) -> str:
        """Why connecting failed: a refused login first, else the last error nats-py reported."""
        return self._auth_error or self._last_error or str(exc) or exc.__class__.__name__

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc)
        denied = _VIOLATION.search(self._last_error)
        if denied is not None:
            self._permission_denied(denied.group(1), denied.group(2), self._last_error)
            return
        if _is_auth_failure(exc):
            self._auth_error = self._last_error
        self.counters[f"nats_error.{type(exc).__name__}"] += 1
        log.warning("bus.nats_error", error=type(exc).__name__, detail=str(exc))

    def _permission_denied(self, action: str, subject: str, text: str) -> None:
        """A refused publish or subscription: one clear error naming the subject and the
        login, and every request waiting on that subject fails now, not at its timeout."""
        user = self.settings.user or "(no user)"
        with_reply = "with reply of" in text
        self.counters["permission_denied"] += 1
        log.error(
            "bus.permission_denied",
            action="reply subject" if with_reply else action,
            subject=subject,
            user=user,
            component=self.sender,
        )
        if action != "publish":
            return
        for token, task in self._refusable.get(subject, {}).items():
            if token not in self._refused:  # one cancellation each, however many errors come
                self._refused.add(token)
                task.cancel()  # turned into BusError where the request waits (see below)
        for token, entry in list(self._pending.items()):
            refused = (self._reply_prefix + token) if with_reply else entry.subject
            if refused.lower() == subject:  # nats-py lower-cases the server's text
                what = "receive replies on" if with_reply else "publish to"
                reason = f"NATS user {user!r} may not {what} {refused} (request to {entry.subject})"
                self._resolve(token, BusError("permission_denied", reason))

    def _refusable_request(
        self, request: Callable[..., Awaitable[Msg]]
    ) -> Callable[..., Coroutine[Any, Any, Msg]]:
        """nats-py's own requests (every JetStream API call, KV and object store write) made to
        fail at once with ``permission_denied`` when the server refuses their subject, as
        :meth:`request` does, instead of waiting out their timeout.

        The waiting task is cancelled and the cancellation turned into :class:`BusError`
        right here (as ``asyncio.timeout`` does), so a request costs no extra task."""

        async def refusable(subject: str, *args: Any, **kwargs: Any) -> Msg:
            task = asyncio.current_task()
            if task is None:  # run outside a task (spawn_eager's first step): nothing to stop
                return await request(subject, *args, **kwargs)
            key, token, cancelling = subject.lower(), object(), task.cancelling()
            waiting = self._refusable.setdefault(key, {})  # lower case: as nats-py reports it
            waiting[token] = task
            try:
                return await request(subject, *args, **kwargs)
            except asyncio.CancelledError:
                if token not in self._refused or task.uncancel() > cancelling:
                    raise  # cancelled by someone else (too)
                user = self.settings.user or "(no user)"
                raise BusError(
                    "permission_denied", f"NATS user {user!r} may not publish to {subject}"
                ) from None
            finally:
                self._refused.discard(token)
                del waiting[token]
                if not waiting:
                    self._refusable.pop(key, None)

        return refusable

    async def _on_disconnected(self) -> None:
        if self._closing:
            log.debug("bus.closed", sender=self.sender)
            return
        self.counters["disconnected"] += 1
        log.warning("bus.disconnected", sender=self.sender)

    async def _on_reconnected(self) -> None:
        self.counters["reconnected"] += 1
        self._max_payload = int(self.nc.max_payload)  # the server may be another one
        log.info("bus.reconnected")
        self.loop.call_later(RESEND_AFTER_RECONNECT_S, self._resend_pending)

    def _resend_pending(self) -> None:
        """Send again every request marked ``resend`` that still waits: it, or its reply, may
        have been lost while the connection was down (its reply comes to the same token, and
        only the first reply counts)."""
        for token, entry in list(self._pending.items()):
            if entry.resend is not None:
                self.counters["request.resent"] += 1
                self.spawn_eager(self._publish_request(entry.subject, entry.resend, token))

    # -- properties ----------------------------------------------------------------
    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise BusError("closed", "the bus is not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusError("closed", "the bus is not connected")
        return self._js

    @property
    def max_payload(self) -> int:
        """The server's maximum message size in bytes."""
        return int(self.nc.max_payload)

    def in_loop(self) -> bool:
        """True when called from the loop thread."""
        return threading.get_ident() == self._loop_ident

    # -- bridging ------------------------------------------------------------------
    def call_later(
        self, delay_s: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle | None:
        """Run ``callback(*args)`` on the loop after ``delay_s``, from any thread.

        On the loop thread this is a plain ``loop.call_later``: no wake-up of the loop
        (``call_soon_threadsafe`` writes to its self-pipe, a system call), and the timer
        comes back so that it can be cancelled.  From another thread it is ``None``.
        """
        if threading.get_ident() == self._loop_ident:  # in_loop(), without a call
            return self.loop.call_later(delay_s, callback, *args)
        self.loop.call_soon_threadsafe(self.loop.call_later, delay_s, callback, *args)
        return None

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block for its result (never from the loop itself)."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("Bus.call() would deadlock on the loop thread; await instead")
        return self.run(coro).result(timeout)

    def submit(self, coro: Awaitable[T], done: Callable[[T | BaseException], None]) -> None:
        """Run ``coro`` on the loop; ``done`` gets its result or exception (on the loop thread)."""

        async def runner() -> None:
            try:
                result: T | BaseException = await coro
            except (asyncio.CancelledError, GeneratorExit):
                raise  # shutting down: nobody is waiting any more
            except Exception as exc:  # handed to the actor, which decides
                result = exc
            self._deliver(done, result)

        self.on_loop(self.spawn, runner())

    def _deliver(self, done: Callable[[T], None], result: T) -> None:
        """Hand an outcome to its callback; an actor that has stopped meanwhile is counted."""
        try:
            done(result)
        except pykka.ActorDeadError:
            self.counters["late_result"] += 1
        except Exception:
            log.exception("bus.callback_failed")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` as a task on the loop (call on the loop) and keep it referenced until done."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn_eager(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` now, on the loop, up to its first suspension; a task carries on from there.

        For NATS publishes: they almost never suspend (nats-py only appends to its buffer
        and wakes its flusher), so they cost no task and no loop turn.  This is Python
        3.12's eager task start, for 3.11, without its bookkeeping: until it suspends,
        ``coro`` runs outside any task, so it must not need one (``asyncio.timeout`` does).
        """
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception:
            self.counters["coroutine_failed"] += 1
            log.exception("bus.coroutine_failed")
            return
        self.spawn(_carry_on(coro, pending))

    # -- messaging -----------------------------------------------------------------
    @property
    def payload_limit(self) -> int:
        """The largest message this connection may send, in bytes."""
        return self._max_payload or self.max_payload

    def encode(self, envelope: Envelope) -> bytes:
        """Encode for this server's payload limit (``WireError`` "oversize" beyond it)."""
        return encode(envelope, max_bytes=self._max_payload or self.max_payload)

    def on_loop(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` at once on the loop thread, or on the loop soon from another."""
        if threading.get_ident() == self._loop_ident:
            callback(*args)
        else:
            self.loop.call_soon_threadsafe(callback, *args)

    def soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop a turn later, from any thread."""
        if threading.get_ident() == self._loop_ident:
            self.loop.call_soon(callback, *args)
        else:
            self.loop.call_soon_threadsafe(callback, *args)

    def serve_locally(
        self, subject: str, handler: Handler, *, records: RecordHandler | None = None
    ) -> None:
        """Hand what this process publishes or requests on ``subject`` to ``handler`` in
        process, instead of a round trip through NATS (locality-aware delivery).

        For subjects this process subscribes to itself (its inbox, or a queue group it
        serves, which it then prefers to other members).  The message is still encoded, so
        payload limit rejects the same messages as over NATS, and decoded again, so the
        handler gets what it would get from NATS (nested records as maps), on the loop a turn
        later, as a NATS delivery would.
        Replies to this connection's own requests are always delivered in process.

        ``records``: this process's own typed records on ``subject`` may also skip the
        encoding, through :meth:`hand_over`; they go to ``records`` (replacing the handler
        without one sends them encoded again).
        """
        self._local[subject] = handler
        if records is None:
            self._local_records.pop(subject, None)
        else:
            self._local_records[subject] = records

    def serves_locally(self, subject: str) -> bool:
        """Whether this process serves ``subject`` itself (see :meth:`serve_locally`)."""
        return subject in self._local

    def takes_records(self, subject: str) -> bool:
        """Whether :meth:`hand_over` on ``subject`` would hand the record over."""
        return subject in self._local_records

    def hand_over(self, subject: str, envelope: Envelope, body: Any) -> bool:
        """Give ``body``, the typed record of ``envelope``'s payload, to this process's own
        handler of ``subject`` a loop turn later, as a delivery would come: not encoded, not
        decoded, not checked again (it is this process's own record).  The sender answers for
        the payload limit.  False, and nothing done, when no handler here takes records on
        ``subject``: publish it instead."""
        take = self._local_records.get(subject)
        if take is None:
            return False
        self.counters["local.handed_over"] += 1
        self.soon(take, envelope, body)
        return True

    def stop_serving_locally(self, subjects: set[str] | list[str]) -> None:
        """Send ``subjects`` over NATS again (the process stops serving them)."""
        for subject in subjects:
            self._local.pop(subject, None)
            self._local_records.pop(subject, None)

    def _take_local_reply(self, token: str, data: bytes) -> None:
        entry = self._pending.get(token)
        if entry is None:
            self.counters["late_reply"] += 1  # timed out already
            return
        self._resolve(token, _reply_result(data))

    def _local_handle(self, handler: Handler, subject: str, data: bytes, reply: str | None) -> None:
        """Run a subscription handler on a message delivered in process (as ``take`` does)."""
        self.counters["local.delivered"] += 1
        try:
            envelope = decode(data)
        except WireError as exc:
            self.reject(subject, reply, exc.code, str(exc))
            return
        try:
            handler(envelope, reply)
        except Exception as exc:
            log.exception("bus.handler_failed", subject=subject)
            self.reject(subject, reply, "internal", f"handler failed: {exc}")

    def publish(self, subject: str, envelope: Envelope) -> None:
        """Fire-and-forget publish from any thread; encoding errors raise in the caller."""
        self.publish_encoded(subject, self.encode(envelope))

    def publish_encoded(
        self,
        subject: str,
        data: bytes,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """:meth:`publish` of an envelope encoded already (by :meth:`encode`).

        A reply to a request of this connection, or a subject served in this process, is
        delivered in process; anything else goes to NATS, and a failure to publish it is
        counted and logged, or given to ``on_failure``."""
        prefix = self._reply_prefix
        if prefix and subject.startswith(prefix):  # a reply to a request of this connection
            self.counters["local.replies"] += 1
            self.soon(self._take_local_reply, subject[len(prefix) :], data)
            return
        local = self._local.get(subject)
        if local is not None:
            self.soon(self._local_handle, local, subject, data, None)
            return
        self.on_loop(self.spawn_eager, self._publish_bytes(subject, data, on_failure))

    async def _publish_bytes(
        self, subject: str, data: bytes, on_failure: Callable[[Exception], None] | None = None
    ) -> None:
        try:
            await self.nc.publish(subject, data)
        except Exception as exc:
            if on_failure is not None:
                on_failure(exc)
                return
            self.counters["publish_failed"] += 1
            log.warning("bus.publish_failed", subject=subject, error=str(exc))

    async def apublish(self, subject: str, envelope: Envelope) -> None:
        """Publish from the loop."""
        await self.nc.publish(subject, self.encode(envelope))

    def request(
        self,
        subject: str,
        envelope: Envelope,
        timeout: float,
        done: ReplyCallback,
        *,
        resend: bool = False,
        again: Envelope | None = None,
        again_after: float = 0.0,
    ) -> None:
        """Request/reply from any thread; ``done`` gets the outcome on the loop, exactly once.

        The outcome is the reply envelope, or :class:`BusError` ("timeout",
        "no_responders", "closed", "permission_denied"), :class:`RemoteError` (an ``error`` reply) or
        :class:`WireError` (a garbled reply, or a request over the payload limit).
        ``resend``: if the connection drops and comes back while it waits, send it again
        (for requests the other side handles idempotently, or can afford to do twice).
        ``again``: what to send in place of ``envelope`` when sending it again (a resend
        marked as one); ``again_after`` > 0: also send it again while no reply came, first
        after that many seconds, then at doubling intervals up to :data:`RESEND_MAX_S`, to the
        same reply token (a request or reply lost on the way, or a server that died with it).
        """
        data: bytes | WireError
        kept: bytes | None = None
        try:
            data = self.encode(envelope)
            if resend:
                kept = data if again is None else self.encode(again)
        except WireError as exc:
            data = exc
        token = str(next(self._reply_seq))
        local = self._local.get(subject)
        if local is not None and not isinstance(data, WireError):
            # served in this process: nothing to send again, NATS cannot lose it
            self.on_loop(self._send_local, subject, data, token, timeout, done, local)
            return
        every = again_after if kept is not None else 0.0
        self.on_loop(self._send_request, subject, data, token, timeout, done, kept, every)

    def _send_request(
        self,
        subject: str,
        data: bytes | WireError,
        token: str,
        timeout: float,
        done: ReplyCallback,
        kept: bytes | None = None,
        every: float = 0.0,
    ) -> None:
        timer = self.loop.call_later(timeout, self._timed_out, token)
        self._pending[token] = _Waiting(done, timer, subject, timeout, kept)
        if isinstance(data, WireError):
            self._resolve(token, data)
            return
        self.spawn_eager(self._publish_request(subject, data, token))
        if every > 0.0:
            self.loop.call_later(every, self._send_again, token, every)

    def _send_local(
        self,
        subject: str,
        data: bytes,
        token: str,
        timeout: float,
        done: ReplyCallback,
        handler: Handler,
    ) -> None:
        """A request to a subject served in this process: the same timer and reply token as
        over NATS, the handler run a loop turn later (see :meth:`serve_locally`)."""
        timer = self.loop.call_later(timeout, self._timed_out, token)
        self._pending[token] = _Waiting(done, timer, subject, timeout)
        reply = self._reply_prefix + token
        self.loop.call_soon(self._local_handle, handler, subject, data, reply)

    def _send_again(self, token: str, waited: float) -> None:
        """Send a waiting request again (its ``again`` bytes), and plan the next send."""
        entry = self._pending.get(token)
        if entry is None or entry.resend is None:
            return  # answered (or failed) already
        self.counters["request.sent_again"] += 1
        self.spawn_eager(self._publish_request(entry.subject, entry.resend, token))
        wait = min(waited * 2.0, RESEND_MAX_S)
        self.loop.call_later(wait, self._send_again, token, wait)

    async def _publish_request(self, subject: str, data: bytes, token: str) -> None:
        try:
            await self.nc.publish(subject, data, reply=self._reply_prefix + token)
        except Exception as exc:
            self.counters["publish_failed"] += 1
            self._resolve(token, BusError("closed", f"cannot send on {subject}: {exc}"))

    def _timed_out(self, token: str) -> None:
        entry = self._pending.get(token)
        if entry is not None:
            reason = f"no reply on {entry.subject} within {entry.timeout:.1f}s"
            self._resolve(token, BusError("timeout", reason))

    async def _on_reply(self, msg: Msg) -> None:
        self._take_reply(msg)  # nats-py's own delivery, where direct delivery is unavailable

    def _take_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._reply_prefix) :]
        entry = self._pending.get(token)
        if entry is None:
            self.counters["late_reply"] += 1  # timed out already
            return
        result: Envelope | BaseException
        if not msg.data and msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            result = BusError("no_responders", f"nobody serves {entry.subject}")
        else:
            result = _reply_result(msg.data)
        self._resolve(token, result)

    def _resolve(self, token: str, result: Envelope | BaseException) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return
        entry.timer.cancel()
        self._deliver(entry.done, result)

    async def arequest(
        self,
        subject: str,
        envelope: Envelope,
        timeout: float,
        *,
        resend: bool = False,
        again: Envelope | None = None,
        again_after: float = 0.0,
    ) -> Envelope:
        """Request/reply from the loop; raises :class:`BusError` or :class:`RemoteError`
        (``resend``, ``again``, ``again_after``: see :meth:`request`)."""
        future: asyncio.Future[Envelope] = self.loop.create_future()

        def done(result: Envelope | BaseException) -> None:
            if future.done():  # the awaiting task was cancelled meanwhile
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        self.request(
            subject, envelope, timeout, done, resend=resend, again=again, again_after=again_after
        )
        return await future

    async def asubscribe(self, subject: str, handler: Handler, *, queue: str = "") -> Any:
        """Subscribe on the loop; ``handler`` receives decoded envelopes only."""

        async def on_message(msg: Msg) -> None:
            take(msg)  # nats-py's own delivery, where direct delivery is unavailable

        def take(msg: Msg) -> None:
            self.counters["received"] += 1
            try:
                envelope = decode(msg.data)
            except WireError as exc:
                self.reject(msg.subject, msg.reply or None, exc.code, str(exc))
                return
            try:
                handler(envelope, msg.reply or None)
            except Exception as exc:
                log.exception("bus.handler_failed", subject=msg.subject)
                self.reject(msg.subject, msg.reply or None, "internal", f"handler failed: {exc}")

        sub = await self.nc.subscribe(
            subject, queue=queue, cb=on_message, pending_msgs_limit=200_000
        )
        deliver_directly(sub, take, self.counters)
        return sub

    def subscribe(self, subject: str, handler: Handler, *, queue: str = "") -> Any:
        """Blocking form of :meth:`asubscribe` for non-loop threads."""
        return self.call(self.asubscribe(subject, handler, queue=queue), timeout=10)

    def reject(self, subject: str, reply: str | None, code: str, message: str) -> None:
        """Log and count a rejected message; answer with an ``error`` envelope if asked."""
        self.counters[f"rejected.{code}"] += 1
        log.warning("bus.rejected", subject=subject, code=code, reason=message)
        if reply:
            self.publish(reply, error_envelope(code, message, sender=self.sender))


class _Started:
    """Awaiting this continues a coroutine that already ran its first step and yielded ``pending``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._pending
        while True:
            try:
                sent = yield value  # the task waits on what the coroutine waits on
            except BaseException as exc:  # cancellation: pass it in
                step = functools.partial(coro.throw, exc)
            else:
                step = functools.partial(coro.send, sent)
            try:
                value = step()
            except StopIteration as stop:
                return stop.value


async def _carry_on(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Started(coro, pending)


def _is_auth_failure(exc: BaseException) -> bool:
    """The server refused the credentials (nats-server says "Authorization Violation" etc.)."""
    text = str(exc).lower()
    return isinstance(exc, nats.errors.AuthorizationError) or any(
        word in text for word in ("authorization", "authentication")
    )


def _reply_result(data: bytes) -> Envelope | BaseException:
    """A reply's bytes as the outcome of its request: the envelope, a :class:`RemoteError`
    for an ``error`` reply, or the :class:`WireError` of garbled bytes."""
    try:
        result = decode(data)
    except WireError as exc:
        return exc
    if result.kind is Kind.ERROR:
        payload = result.payload
        return RemoteError(str(payload["code"]), str(payload["message"]))
    return result


def error_envelope(
    code: str, message: str, *, sender: str, like: Envelope | None = None
) -> Envelope:
    """An ``error`` envelope (keeping ``like``'s ids when given)."""
    payload = {"code": code, "message": message}
    if like is not None:
        return like.reply(Kind.ERROR, payload, sender=sender)
    return Envelope(kind=Kind.ERROR, payload=payload, sender=sender)
