"""The learner's durable pull consumer on the trace stream, positioned by its own state.

The learner's run directory, not the server, is the record of what it has
reflected: its state names the last stream sequence it covers.  So on start
:meth:`TraceConsumer.open` (re)creates the durable consumer to deliver from the
next sequence: traces the state covers are not read again, traces it does not
cover are, at once (a consumer left with unacknowledged messages by a killed
learner would hold them back for ``ack_wait``).  Acknowledgement is cumulative
(``AckPolicy.ALL``): after each durable save the learner acknowledges the last
message the save covers, and the consumer's ack floor is what a monitor sees.
One learner per stream: a second one would reposition the first's consumer.

A pull consumer's delivery is at most once per attempt: a message lost in transit
(a consumer leader moving, a route dropping) is only redelivered after
``ack_wait``, and a cumulative acknowledgement of a later message acknowledges it
unread.  The stream holds nothing but traces, so the sequences a consumer delivers
are consecutive; the learner reads any it skipped by sequence (:meth:`TraceConsumer.get`)
before the message that revealed the gap.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from hieramas.bus import Bus
from hieramas.traces import TRACE_STREAM
from hieramas.wire import Subjects

__all__ = ["DURABLE", "StreamPosition", "TraceConsumer"]

log = structlog.get_logger(__name__)

DURABLE = "hieramas-learner"


class StreamPosition:
    """The stream's identity (its creation time) and last sequence."""

    def __init__(self, created: str, first_seq: int, last_seq: int) -> None:
        self.created = created
        self.first_seq = first_seq
        self.last_seq = last_seq


class TraceConsumer:
    """Pull batches of trace messages from ``from_seq`` on; acknowledge cumulatively."""

    def __init__(
        self,
        bus: Bus,
        subjects: Subjects,
        *,
        durable: str = DURABLE,
        ack_wait_s: float = 300.0,
    ) -> None:
        self.bus = bus
        self.subjects = subjects
        self.durable = durable
        self.ack_wait_s = ack_wait_s
        self._sub: Any = None

    async def position(self) -> StreamPosition:
        """Where the stream is now."""
        info = await self.bus.js.stream_info(TRACE_STREAM)
        return StreamPosition(
            str(getattr(info, "created", "") or ""),
            int(info.state.first_seq),
            int(info.state.last_seq),
        )

    async def open(self, from_seq: int) -> None:
        """(Re)create the durable consumer to deliver from stream sequence ``from_seq``."""
        js = self.bus.js
        with contextlib.suppress(Exception):  # not there yet
            await js.delete_consumer(TRACE_STREAM, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if from_seq > 1 else DeliverPolicy.ALL,
            opt_start_seq=from_seq if from_seq > 1 else None,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=-1,
            filter_subject=self.subjects.trace_wildcard,
            description="HieraMAS learner",
        )
        await js.add_consumer(TRACE_STREAM, config)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=TRACE_STREAM)
        log.info("learner.consumer_open", durable=self.durable, from_seq=from_seq)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most ``timeout`` for the first (``[]`` if none)."""
        try:
            msgs: list[Msg] = await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:  # nats' own, or a bare asyncio one (nats-py raises both)
            return []
        return msgs

    async def get(self, seq: int) -> tuple[str, bytes] | None:
        """The subject and data of stream message ``seq``; None if the stream no longer
        has it (aged out, or deleted)."""
        try:
            raw = await self.bus.js.get_msg(TRACE_STREAM, seq)
        except NotFoundError:
            return None
        return str(raw.subject or ""), bytes(raw.data or b"")

    @staticmethod
    def seq(msg: Msg) -> int:
        """A message's stream sequence."""
        return int(msg.metadata.sequence.stream)

    async def ack_through(self, msg: Msg) -> None:
        """Acknowledge ``msg`` and every message delivered before it."""
        await msg.ack()

    async def close(self) -> None:
        """Stop pulling (the durable consumer stays, positioned at the last ack)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
