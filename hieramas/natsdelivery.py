"""Hand NATS messages to a subscription's handler as they are parsed, not one loop turn later.

nats-py queues every message of a callback subscription in an ``asyncio.Queue``
and runs the callback from a task of its own: per message a queue put, a future
woken, a loop turn, a task step and a coroutine for the callback.  For handlers
that never block (the bus's: decode, then ``tell`` an actor or resolve a
request) that hop buys nothing, and a query sends about 85 messages.

:func:`deliver_directly` swaps the subscription's pending queue for an object
with the same surface that calls the handler at once, inside nats-py's reading
task.  It relies on two private attributes of ``nats.aio.subscription.Subscription``
(``_pending_queue``, ``_pending_size``); when a nats-py release lacks them it
changes nothing and the subscription keeps nats-py's own delivery.

Swap right after ``await nc.subscribe(...)`` returns, and give nats-py a
callback that does the same as the handler.  The SUB command normally still
sits in nats-py's write buffer then, so nothing can have reached the original
queue; if something did (nats-py had to flush inline), its task still hands it
to that callback, after which the task waits for good.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.msg import Msg

__all__ = ["deliver_directly"]

log = structlog.get_logger(__name__)


class _DirectDelivery(asyncio.Queue[Msg]):
    """Stands in for a subscription's pending queue: each message goes to the handler now.

    A subclass of ``asyncio.Queue``, so that any queue method a nats-py release may call
    exists; it stays empty, except for what reached the original queue before the swap.
    """

    def __init__(self, sub: Any, handle: Callable[[Msg], None], counters: Counter[str]) -> None:
        super().__init__()
        self._earlier: asyncio.Queue[Msg] = sub._pending_queue  # nats-py never adds to it again
        self._earlier_left = not self._earlier.empty()
        self._sub = sub
        self._handle = handle
        self._counters = counters

    def put_nowait(self, msg: Msg) -> None:
        if self._earlier_left:
            self._hand_over_earlier()  # in the order they came
        self._deliver(msg)

    def _deliver(self, msg: Msg) -> None:
        self._sub._pending_size -= len(msg.data)  # nats-py counted it as pending: it is not
        try:
            self._handle(msg)
        except Exception:  # the reading task must survive any handler
            self._counters["delivery_failed"] += 1
            log.exception("nats.delivery_failed", subject=msg.subject)

    def _hand_over_earlier(self) -> None:
        earlier = self._earlier
        while not earlier.empty():
            self._deliver(earlier.get_nowait())
        self._earlier_left = False

    async def get(self) -> Msg:
        """What nats-py's own task waits on: messages queued before the swap, then nothing."""
        if not self._earlier.empty():
            return self._earlier.get_nowait()
        await asyncio.get_running_loop().create_future()  # until the subscription stops
        raise AssertionError("unreachable: that future is only ever cancelled")

    def get_nowait(self) -> Msg:
        return self._earlier.get_nowait()  # QueueEmpty, unless something came before the swap

    def qsize(self) -> int:
        return self._earlier.qsize()

    def empty(self) -> bool:
        return self._earlier.empty()

    def task_done(self) -> None:  # nats-py's task calls it after each message it handled
        return None

    async def join(self) -> None:  # a drain waits for queued messages: hand them over now
        self._hand_over_earlier()


def deliver_directly(sub: Any, handle: Callable[[Msg], None], counters: Counter[str]) -> bool:
    """Make ``sub`` call ``handle(msg)`` as each message is parsed; False if nats-py changed.

    ``handle`` runs inside nats-py's reading task, so it must not block; an
    exception from it is logged and counted in ``counters["delivery_failed"]``.
    Call this right after ``await nc.subscribe(...)``, before yielding to the loop.
    """
    if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue) or not isinstance(
        getattr(sub, "_pending_size", None), int
    ):
        return False
    sub._pending_queue = _DirectDelivery(sub, handle, counters)
    return True
