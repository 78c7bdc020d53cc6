"""Proposer and synthesizer actors: each fills one slot of a supernode with one LLM call.

A slot call arrives as a NATS request carrying everything the call needs
(role, task, inputs, model and endpoint records, deadline); the actor renders
the prompt, starts the call without blocking, and replies when it finishes.
"""

from __future__ import annotations

from typing import Any

import pykka
import structlog

from hieramas.actors import prompting
from hieramas.actors.calls import call_record, start_llm_call
from hieramas.actors.context import WorkerContext
from hieramas.actors.messages import CallDone, Inbound
from hieramas.bus import error_envelope
from hieramas.llm.types import EndpointSpec, Message, ModelSpec
from hieramas.wire import Envelope, Kind

__all__ = ["ProposerActor", "SlotActor", "SynthesizerActor"]

log = structlog.get_logger(__name__)


class SlotActor(pykka.ThreadingActor):
    """One LLM slot of one supernode; subclasses choose the prompt."""

    slot_kind = "slot"

    def __init__(self, ctx: WorkerContext, node: str, slot: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.node = node
        self.slot = slot
        self._pending: dict[str, tuple[Envelope, str | None, ModelSpec, dict[str, Any]]] = {}

    def messages(self, call: dict[str, Any]) -> list[Message]:
        """The chat messages for ``call``."""
        raise NotImplementedError

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Inbound):
            self._on_call(message)
        elif isinstance(message, CallDone):
            self._on_done(message)

    def _on_call(self, message: Inbound) -> None:
        envelope = message.envelope
        try:
            call = envelope.payload["call"]
            model = ModelSpec(**call["model"])
            endpoint = EndpointSpec(**call["endpoint"])
            messages = self.messages(call)
            key = f"{envelope.query_id}/{envelope.span_id}"
        except (KeyError, TypeError, ValueError) as exc:
            self._reject(message, "bad_call", f"malformed {self.slot_kind} call: {exc!r}")
            return
        event = {
            "event": "llm_call",
            "query_id": envelope.query_id,
            "trace_id": envelope.trace_id,
            "parent_span": envelope.span_id,
            "config_version": envelope.config_version,
            "node": self.node,
            "role": call.get("role", ""),
            "slot": self.slot,
            "worker": self.ctx.worker_id,
        }
        self._pending[key] = (envelope, message.reply, model, event)
        notify = call.get("notify")
        if notify:
            accepted = {
                "node": self.node,
                "slot": envelope.payload["slot"],
                "worker": self.ctx.worker_id,
            }
            self.ctx.bus.publish(
                str(notify), self.ctx.envelope(Kind.SLOT_ACCEPTED, accepted, envelope)
            )
        start_llm_call(
            self.ctx,
            self.actor_ref,
            query_id=key,
            tag=self.slot,
            model=model,
            endpoint=endpoint,
            messages=messages,
            max_tokens=int(call.get("max_tokens", 1024)),
            temperature=float(call.get("temperature", 0.0)),
            deadline_unix=float(call["deadline_unix"]),
            seed=call.get("seed"),
        )

    def _on_done(self, done: CallDone) -> None:
        pending = self._pending.pop(done.query_id, None)
        if pending is None:
            return
        envelope, reply, model, event = pending
        record = call_record(done, model, event=event)
        self.ctx.traces.emit({k: v for k, v in record.items() if k != "text"})
        if reply:
            payload = {
                "slot": envelope.payload["slot"],
                "status": record["outcome"],
                "call": record,
            }
            try:
                self.ctx.bus.publish(reply, self.ctx.envelope(Kind.SLOT_RESULT, payload, envelope))
            except ValueError as exc:  # oversize completion: answer with a clear error
                self._reject(Inbound(envelope, reply), "oversize", str(exc))

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


def _pairs(raw: list[Any]) -> list[tuple[str, str]]:
    return [(str(role), str(text)) for role, text in raw]
