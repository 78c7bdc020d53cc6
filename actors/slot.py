"""Proposer and synthesizer actors: each fills one slot of a supernode with one LLM call.

A slot call arrives as a NATS request carrying the prompt's parts, the LLM's pool name and
a deadline; the worker has checked it and resolved the LLM's model and endpoint records from
the trusted config version (:class:`~hieramas.actors.messages.SlotWork`).  The actor renders
the prompt, starts the call without blocking, and replies when it finishes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog

from hieramas.actors import prompting
from hieramas.actors.calls import start_llm_call, traced_call
from hieramas.actors.context import WorkerContext
from hieramas.actors.dispatch import LoopActor
from hieramas.actors.messages import CallDone, SlotDone, SlotWork
from hieramas.actors.trusted import Refused, ResolvedConfig, refuse
from hieramas.bus import BusError, RemoteError, error_envelope
from hieramas.llm.types import Message, ModelSpec
from hieramas.wire import Envelope, Kind, WireError
from hieramas.wire.messages import SlotAccepted, SlotCallSpec, SlotResult, payload

__all__ = [
    "LocalCall",
    "ProposerActor",
    "SlotActor",
    "SynthesizerActor",
    "call_slots_here",
    "slot_messages",
]

log = structlog.get_logger(__name__)

ANNOUNCE_AFTER_S = 0.25
"""A call still running after this long tells its supernode which worker holds it (for failover);
quicker calls are acknowledged by their reply alone."""


class SlotActor(LoopActor):
    """One LLM slot of one supernode; subclasses choose the prompt."""

    slot_kind = "slot"

    def __init__(self, ctx: WorkerContext, node: str, slot: str) -> None:
        super().__init__(ctx.bus.loop, ctx.supervisor)
        self.ctx = ctx
        self.node = node
        self.slot = slot

    def messages(self, call: SlotCallSpec) -> list[Message]:
        """The chat messages for ``call``."""
        raise NotImplementedError

    def on_receive(self, message: Any) -> None:
        if isinstance(message, SlotWork):
            self._on_call(message)

    def on_crash(self, message: object, error: BaseException) -> None:
        if isinstance(message, SlotWork):  # its calls in flight answer by themselves
            self._reject(message, "internal", f"{self.slot_kind} failed: {error!r}")

    def _on_call(self, message: SlotWork) -> None:
        envelope, call = message.envelope, message.request.call
        slot_tag = message.request.slot
        attempt = message.attempt
        try:
            messages = self.messages(call)
        except ValueError as exc:  # a domain or role the task catalogue does not know
            self._reject(message, "bad_call", f"{self.slot_kind} call: {exc}")
            return
        ctx, reply, finished = self.ctx, message.reply, [False]
        timer: asyncio.TimerHandle | None = None
        node, slot, role, model = self.node, self.slot, call.role, message.model
        notify = call.notify
        if notify == ctx.inbox:  # our own supernode's call: its tracker is in this process
            ctx.tracker.taken(envelope.query_id, node, slot, attempt, ctx.worker_id)
        elif notify:

            def announce() -> None:  # only calls still running need a taker on record
                if not finished[0]:
                    accepted = SlotAccepted(node=node, slot=slot_tag, worker=ctx.worker_id)
                    ctx.bus.publish(
                        notify, ctx.envelope(Kind.SLOT_ACCEPTED, payload(accepted), envelope)
                    )

            timer = ctx.bus.call_later(ANNOUNCE_AFTER_S, announce)

        def complete(done: CallDone) -> None:  # on the bus loop: nothing here touches actor state
            finished[0] = True
            if timer is not None:
                timer.cancel()
            _reply(ctx, envelope, reply, model, (node, role, slot, attempt, slot_tag), done)

        start_llm_call(
            ctx,
            complete,
            query_id=envelope.query_id,
            tag=self.slot,
            model=model,
            endpoint=message.endpoint,
            messages=messages,
            max_tokens=call.max_tokens,
            temperature=call.temperature,
            deadline_unix=call.deadline_unix,
            seed=call.seed,
        )

    def _reject(self, message: SlotWork, code: str, reason: str) -> None:
        self.ctx.bus.counters[f"rejected.{code}"] += 1
        log.warning("slot.rejected", node=self.node, slot=self.slot, code=code, reason=reason)
        if message.reply:
            self.ctx.bus.publish(
                message.reply,
                error_envelope(code, reason, sender=self.ctx.worker_id, like=message.envelope),
            )


def _proposer_messages(call: SlotCallSpec) -> list[Message]:
    return prompting.proposer_messages(call.domain, call.role, call.task, call.predecessors)


def _synthesizer_messages(call: SlotCallSpec) -> list[Message]:
    if not call.proposals:  # every proposer skipped or failed: answer as a proposer would
        return _proposer_messages(call)
    return prompting.synthesizer_messages(
        call.domain, call.role, call.task, call.proposals, call.predecessors
    )


def slot_messages(call: SlotCallSpec) -> list[Message]:
    """The chat messages of ``call``; ``ValueError`` for a domain or role the task
    catalogue does not know."""
    if call.kind == "synthesize":
        return _synthesizer_messages(call)
    return _proposer_messages(call)


class ProposerActor(SlotActor):
    """Answers the task in its role, seeing the predecessors' outputs."""

    slot_kind = "proposer"

    def messages(self, call: SlotCallSpec) -> list[Message]:
        return _proposer_messages(call)


class SynthesizerActor(SlotActor):
    """Reads all proposals of its supernode and writes the supernode's output."""

    slot_kind = "synthesizer"

    def messages(self, call: SlotCallSpec) -> list[Message]:
        return _synthesizer_messages(call)


RESULT_MARGIN_BYTES = 8192
"""Room a ``slot.result`` takes besides the call's text and error: below the payload limit by
more than this, a result is known to fit without encoding it."""


LocalCall = tuple[SlotCallSpec, tuple[str, int, str]]
"""A slot call to make in process, with its site: (slot, attempt, subject)."""


def call_slots_here(
    ctx: WorkerContext,
    config: ResolvedConfig,
    calls: Sequence[LocalCall],
    ids: Envelope,
    timeout_s: float,
    on_done: Callable[[list[tuple[str, SlotDone | BaseException]]], None],
) -> None:
    """Make slot calls of a supernode on this worker, which serves those slots itself, in
    process: no request, no actor hand-off, no encoding (as the decision node calls its LLM).

    Each call is what a slot actor does with a call taken from NATS, and what the supernode
    gets back is what a reply would bring: the LLM is looked up in the trusted config
    version (a refusal is logged and counted, and comes back as the ``RemoteError`` of its
    error reply), the ``llm_call`` event is traced when the call ends, a result over the
    payload limit is an ``oversize`` error, and a call with no outcome within ``timeout_s``
    is a ``BusError`` "timeout".  ``ids`` is the query's activation (its ids parent the
    calls).  ``on_done`` runs once, on the loop, when every call has its outcome, with each
    call's ``slot@attempt`` tag and outcome: the node waits for all of them anyway, and one
    hand-off instead of one per call is what its proposers cost the actor.
    """
    bus = ctx.bus
    bus.counters["local.slot_calls"] += len(calls)
    outcomes: dict[int, SlotDone | BaseException] = {}
    answered = False

    def settle(index: int, outcome: SlotDone | BaseException) -> None:
        if answered or index in outcomes:
            return
        outcomes[index] = outcome
        if len(outcomes) == len(calls):
            answer()

    def answer() -> None:
        nonlocal answered
        answered = True
        if timer is not None:  # None when made off the loop (threads dispatch)
            timer.cancel()
        on_done(
            [(f"{slot}@{attempt}", outcomes[i]) for i, (_, (slot, attempt, _)) in enumerate(calls)]
        )

    def expire() -> None:
        if answered:
            return
        for index, (_, (_, _, subject)) in enumerate(calls):
            outcomes.setdefault(
                index, BusError("timeout", f"no reply on {subject} within {timeout_s:.1f}s")
            )
        answer()

    timer = bus.call_later(timeout_s, expire)
    for index, (call, site) in enumerate(calls):
        _start_here(ctx, config, call, ids, site, functools.partial(settle, index))


def _start_here(
    ctx: WorkerContext,
    config: ResolvedConfig,
    call: SlotCallSpec,
    ids: Envelope,
    site: tuple[str, int, str],
    on_done: Callable[[SlotDone | BaseException], None],
) -> None:
    """Start one slot call of :func:`call_slots_here`; ``on_done`` gets its outcome."""
    slot, attempt, subject = site
    bus = ctx.bus
    try:
        model, endpoint = config.slot_specs(call.node, slot, call.llm)  # never from the plan
        try:
            messages = slot_messages(call)
        except ValueError as exc:  # a domain or role the task catalogue does not know
            raise Refused("bad_call", str(exc)) from None
    except Refused as exc:
        refuse(bus, subject, None, exc)
        on_done(RemoteError(exc.code, str(exc)))
        return

    def complete(done: CallDone) -> None:  # on the loop
        event, text = traced_call(ctx, done, model, ids, (call.node, call.role, slot, attempt))
        if 4 * (len(text) + len(event.error or "")) + RESULT_MARGIN_BYTES > bus.payload_limit:
            result = SlotResult(
                slot=f"{slot}@{attempt}", status=event.outcome, call=event, text=text
            )
            try:  # as big as the limit, perhaps: encode it to know
                bus.encode(ctx.envelope(Kind.SLOT_RESULT, payload(result), ids))
            except WireError as exc:
                bus.counters["rejected.oversize"] += 1
                log.warning("slot.oversize", node=call.node, slot=slot, reason=str(exc))
                on_done(RemoteError("oversize", str(exc)))
                return
        on_done(SlotDone(msgspec.to_builtins(event), text))

    start_llm_call(
        ctx,
        complete,
        query_id=ids.query_id,
        tag=slot,
        model=model,
        endpoint=endpoint,
        messages=messages,
        max_tokens=call.max_tokens,
        temperature=call.temperature,
        deadline_unix=call.deadline_unix,
        seed=call.seed,
    )


def _reply(
    ctx: WorkerContext,
    envelope: Envelope,
    reply: str | None,
    model: ModelSpec,
    site: tuple[str, str, str, int, str],
    done: CallDone,
) -> None:
    """Trace the finished call and answer the supernode that asked for it.

    ``site`` is the call's (node, role, slot, attempt, slot tag on the wire)."""
    node, role, slot, attempt, slot_tag = site
    event, text = traced_call(ctx, done, model, envelope, (node, role, slot, attempt))
    if not reply:
        return
    result = SlotResult(slot=slot_tag, status=event.outcome, call=event, text=text)
    try:
        ctx.bus.publish(reply, ctx.envelope(Kind.SLOT_RESULT, payload(result), envelope))
    except ValueError as exc:  # oversize completion: answer with a clear error instead
        ctx.bus.counters["rejected.oversize"] += 1
        log.warning("slot.oversize", node=event.node, slot=slot, reason=str(exc))
        ctx.bus.publish(
            reply, error_envelope("oversize", str(exc), sender=ctx.worker_id, like=envelope)
        )
