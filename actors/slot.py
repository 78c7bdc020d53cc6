"""Proposer and synthesizer actors: each fills one slot of a supernode with one LLM call.

A slot call arrives as a NATS request carrying everything the call needs
(role, task, inputs, model and endpoint records, deadline); the actor renders
the prompt, starts the call without blocking, and replies when it finishes.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar, cast

import structlog

from hieramas.actors import prompting
from hieramas.actors.calls import call_record, start_llm_call
from hieramas.actors.context import WorkerContext
from hieramas.actors.dispatch import LoopActor
from hieramas.actors.messages import CallDone, Inbound
from hieramas.bus import error_envelope
from hieramas.llm.types import EndpointSpec, Message, ModelSpec
from hieramas.wire import Envelope, Kind

__all__ = ["ProposerActor", "SlotActor", "SynthesizerActor"]

log = structlog.get_logger(__name__)

_Spec = TypeVar("_Spec", ModelSpec, EndpointSpec)

ANNOUNCE_AFTER_S = 0.25
"""A call still running after this long tells its supernode which worker holds it (for failover);
quicker calls are acknowledged by their reply alone."""


class SlotActor(LoopActor):
    """One LLM slot of one supernode; subclasses choose the prompt."""

    slot_kind = "slot"

    def __init__(self, ctx: WorkerContext, node: str, slot: str) -> None:
        super().__init__(ctx.bus.loop)
        self.ctx = ctx
        self.node = node
        self.slot = slot
        self._specs: dict[tuple[type, object], tuple[dict[str, Any], object]] = {}

    def messages(self, call: dict[str, Any]) -> list[Message]:
        """The chat messages for ``call``."""
        raise NotImplementedError

    def _spec(self, kind: type[_Spec], record: dict[str, Any]) -> _Spec:
        """``kind(**record)``, the same object again while the record stays the same.

        Every call carries its model and endpoint records; reusing the spec saves building
        it per call, and the LLM client then finds its endpoint state by identity.
        """
        key = (kind, record.get("name"))
        cached = self._specs.get(key)
        if cached is not None and cached[0] == record:
            return cast(_Spec, cached[1])
        spec = kind(**record)
        self._specs[key] = (record, spec)
        return spec

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Inbound):
            self._on_call(message)

    def _on_call(self, message: Inbound) -> None:
        envelope = message.envelope
        try:
            call = envelope.payload["call"]
            model = self._spec(ModelSpec, call["model"])
            endpoint = self._spec(EndpointSpec, call["endpoint"])
            messages = self.messages(call)
            attempt = int(str(envelope.payload["slot"]).partition("@")[2] or 1)
        except (KeyError, TypeError, ValueError) as exc:
            self._reject(message, "bad_call", f"malformed {self.slot_kind} call: {exc!r}")
            return
        role = str(call.get("role", ""))
        ctx, reply, finished = self.ctx, message.reply, [False]
        timer: asyncio.TimerHandle | None = None
        node, slot = self.node, self.slot
        notify = call.get("notify")
        if notify:

            def announce() -> None:  # only calls still running need a taker on record
                if not finished[0]:
                    accepted = {
                        "node": node,
                        "slot": envelope.payload["slot"],
                        "worker": ctx.worker_id,
                    }
                    ctx.bus.publish(
                        str(notify), ctx.envelope(Kind.SLOT_ACCEPTED, accepted, envelope)
                    )

            timer = ctx.bus.call_later(ANNOUNCE_AFTER_S, announce)

        def complete(done: CallDone) -> None:  # on the bus loop: nothing here touches actor state
            finished[0] = True
            if timer is not None:
                timer.cancel()
            _reply(ctx, envelope, reply, model, (node, role, slot, attempt), done)

        start_llm_call(
            ctx,
            complete,
            query_id=envelope.query_id,
            tag=self.slot,
            model=model,
            endpoint=endpoint,
            messages=messages,
            max_tokens=int(call.get("max_tokens", 1024)),
            temperature=float(call.get("temperature", 0.0)),
            deadline_unix=float(call["deadline_unix"]),
            seed=call.get("seed"),
        )

    def _reject(self, message: Inbound, code: str, reason: str) -> None:
        self.ctx.bus.counters[f"rejected.{code}"] += 1
        log.warning("slot.rejected", node=self.node, slot=self.slot, code=code, reason=reason)
        if message.reply:
            self.ctx.bus.publish(
                message.reply,
                error_envelope(code, reason, sender=self.ctx.worker_id, like=message.envelope),
            )


class ProposerActor(SlotActor):
    """Answers the task in its role, seeing the predecessors' outputs."""

    slot_kind = "proposer"

    def messages(self, call: dict[str, Any]) -> list[Message]:
        return prompting.proposer_messages(
            call["domain"], call["role"], call["task"], _pairs(call.get("predecessors", []))
        )


class SynthesizerActor(SlotActor):
    """Reads all proposals of its supernode and writes the supernode's output."""

    slot_kind = "synthesizer"

    def messages(self, call: dict[str, Any]) -> list[Message]:
        if not call.get("proposals"):
            return prompting.proposer_messages(
                call["domain"], call["role"], call["task"], _pairs(call.get("predecessors", []))
            )
        return prompting.synthesizer_messages(
            call["domain"],
            call["role"],
            call["task"],
            [str(p) for p in call["proposals"]],
            _pairs(call.get("predecessors", [])),
        )


def _reply(
    ctx: WorkerContext,
    envelope: Envelope,
    reply: str | None,
    model: ModelSpec,
    site: tuple[str, str, str, int],
    done: CallDone,
) -> None:
    """Trace the finished call and answer the supernode that asked for it.

    ``site`` is the call's (node, role, slot, attempt)."""
    node, role, slot, attempt = site
    event, text = call_record(
        done,
        model,
        trace_id=envelope.trace_id,
        parent_span=envelope.span_id,
        config_version=envelope.config_version,
        node=node,
        role=role,
        slot=slot,
        attempt=attempt,
        worker=ctx.worker_id,
    )
    ctx.traces.emit(event)
    if not reply:
        return
    payload = {
        "slot": envelope.payload["slot"],
        "status": event.outcome,
        "call": event,
        "text": text,
    }
    try:
        ctx.bus.publish(reply, ctx.envelope(Kind.SLOT_RESULT, payload, envelope))
    except ValueError as exc:  # oversize completion: answer with a clear error instead
        ctx.bus.counters["rejected.oversize"] += 1
        log.warning("slot.oversize", node=event.node, slot=slot, reason=str(exc))
        ctx.bus.publish(
            reply, error_envelope("oversize", str(exc), sender=ctx.worker_id, like=envelope)
        )


def _pairs(raw: list[Any]) -> list[tuple[str, str]]:
    return [(str(role), str(text)) for role, text in raw]
