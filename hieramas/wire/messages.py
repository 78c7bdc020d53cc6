"""The runtime's messages, defined once: the typed payload of every kind the workers exchange.

Each payload is a ``msgspec.Struct``.  Senders build these records (:func:`payload` turns one
into an envelope's payload map); receivers check a decoded envelope's payload against its
record with :func:`read` at the edge, before any actor sees it.  A message of the right kind
with a missing field or a field of the wrong type is a :class:`~hieramas.wire.WireError`
(code ``payload``) that names the field, logged, counted and answered; it never reaches actor
logic.  Unknown extra fields are ignored, so a newer sender can add one (with a default).

Names (node ids, slot tags, subjects) are checked by what they must match where they are
used: a node of the plan or of the stored config, a worker inbox (``Subjects.is_instance``),
a slot tag (:func:`split_slot`).  Those set lookups cost nanoseconds where a regular
expression per field, checked by msgspec, cost about a microsecond each (a fifth of a
lone query's decoding time went there).

=====================  =====================  =========================================
kind                   record                 from -> to
=====================  =====================  =========================================
``node.activate``      :class:`NodeActivate`  gateway -> worker (queue group)
``node.armed``         :class:`NodeArmed`     worker -> gateway (the activation's reply)
``node.routes``        :class:`NodeRoutes`    gateway -> worker inbox
``node.input``         :class:`NodeInput`     worker or gateway -> worker inbox
``node.output``        :class:`NodeOutput`    worker -> gateway inbox
``node.probe``         :class:`NodeProbe`     gateway -> worker inbox (a request)
``node.state``         :class:`NodeState`     worker -> gateway (the probe's reply)
``slot.call``          :class:`SlotCall`      supernode -> proposer / synthesizer slot
``slot.result``        :class:`SlotResult`    slot -> supernode (the call's reply)
``slot.accepted``      :class:`SlotAccepted`  slot -> the supernode's worker inbox
``worker.hello``       :class:`WorkerHello`   worker -> everyone; gateway -> gateways
``error``              :class:`ErrorReply`    anyone, in reply to a request
=====================  =====================  =========================================

A slot call names the LLM (its name in the config's pool) and, in its envelope, the config
version; it never carries a URL or the name of a key variable: workers look those up in the
stored config (:mod:`hieramas.actors.trusted`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from hieramas.controller.plan import Plan, Unix
from hieramas.wire.envelope import Envelope, WireError
from hieramas.wire.events import LlmCall, NodeModels
from hieramas.wire.kinds import INPUT_OUTPUT_KEYS, Kind

__all__ = [
    "PAYLOADS",
    "ErrorReply",
    "NodeActivate",
    "NodeArmed",
    "NodeInput",
    "NodeOutput",
    "NodeOutputRecord",
    "NodeProbe",
    "NodeRoutes",
    "NodeState",
    "SlotAccepted",
    "SlotCall",
    "SlotCallSpec",
    "SlotResult",
    "Subject",
    "WorkerHello",
    "payload",
    "read",
    "split_slot",
]

Subject = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$", max_length=256)
]
"""A concrete NATS subject: dot-separated tokens, no wildcards, no ``$`` subjects."""
WorkerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=4 * 1024 * 1024)]


class _Payload(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Base of every payload record: a map on the wire, unknown keys ignored."""


class NodeActivate(_Payload, kw_only=True, frozen=True, gc=False):
    """Arm ``nodes`` (``node`` first) of one query on the worker that takes it."""

    plan: Plan
    node: str
    nodes: list[str] = []
    """Every node this activation asks for (the worker arms those it hosts)."""
    gateway: str
    """The gateway's inbox: node outputs go there."""


class NodeArmed(_Payload, kw_only=True, frozen=True, gc=False):
    """The worker armed ``nodes``; the query's other nodes send it their inputs at ``inbox``."""

    node: str
    nodes: list[str]
    inbox: str
    worker: str
    started: bool = False
    """It armed the whole query and started it at once: no routes needed."""


class NodeRoutes(_Payload, kw_only=True, frozen=True, gc=False):
    """Where every node of a query runs (a worker inbox per node)."""

    node: str
    nodes: list[str] = []
    routes: dict[str, str]


class NodeOutputRecord(_Payload, kw_only=True, frozen=True, gc=False):
    """One node's finished output (a supernode's or the decision's).

    A ``node.input`` carries only its first fields (:meth:`as_input`); the gateway gets all."""

    node: str
    role: str = ""
    status: Literal["ok", "error"]
    text: Text = ""
    answer: str | None = None
    answerless: bool = False
    error: str | None = None
    failures: list[str] = []
    models: NodeModels | None = None
    calls: dict[str, Any] = {}
    """A supernode's calls by slot tag (each an ``llm_call`` record without its text, or a
    ``vote``/``pass`` record).  Only carried to the query's result: nothing computes on them,
    so their contents are not converted (that was most of the cost of reading an output)."""
    vote: dict[str, Any] | None = None
    proposals_used: int = 0
    decided_by: str | None = None
    """The decision node's: how it decided."""
    model: str | None = None
    """The decision node's LLM, when it made a call."""
    call: LlmCall | None = None
    """The decision node's call."""
    started: float | None = None
    finished: float = 0.0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    worker: str = ""

    def as_input(self) -> NodeOutputRecord:
        """What a successor reads of it (:data:`~hieramas.wire.kinds.INPUT_OUTPUT_KEYS`)."""
        return NodeOutputRecord(
            node=self.node,
            role=self.role,
            status=self.status,
            text=self.text,
            answer=self.answer,
            answerless=self.answerless,
            error=self.error,
        )


class NodeInput(_Payload, kw_only=True, frozen=True, gc=False):
    """A predecessor's output, for ``nodes`` (``node`` first) hosted at this inbox."""

    node: str
    nodes: list[str] = []
    output: NodeOutputRecord


class NodeOutput(_Payload, kw_only=True, frozen=True, gc=False):
    """A node's output, for the gateway."""

    output: NodeOutputRecord


class NodeProbe(_Payload, kw_only=True, frozen=True, gc=False):
    """The gateway heard nothing of a query for a while: ``node``, where are you?

    It carries the query's routes, so a node whose routes were lost starts now.  A node that
    finished sends its output again (to the gateway and its successors); receivers keep the
    first copy of each node's output, so a resent one changes nothing but a lost one."""

    node: str
    routes: dict[str, str]
    round: int = 1
    """The gateway's probe round for this query (1, 2, ...)."""


class NodeState(_Payload, kw_only=True, frozen=True, gc=False):
    """A node's answer to a :class:`NodeProbe`."""

    node: str
    state: Literal["waiting", "running", "finished", "unknown"]
    """``waiting`` for inputs (``missing``), ``running`` its calls, ``finished`` (its output
    was sent again), ``unknown``: it holds nothing of the query (the gateway arms it again)."""
    missing: list[str] = []
    """The predecessors whose output it still waits for."""


class SlotCallSpec(_Payload, kw_only=True, frozen=True, gc=False):
    """What one slot call needs: the prompt's parts and the LLM, by its pool name."""

    kind: Literal["propose", "synthesize"]
    node: str
    role: str
    domain: str
    task: Text
    predecessors: list[tuple[str, str]] = []
    """(role, text) of each predecessor that produced an output."""
    proposals: list[str] = []
    """The synthesizer's: the successful proposals, in slot order."""
    llm: str
    """The LLM's name in the pool of the envelope's config version."""
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0
    deadline_unix: Unix
    notify: str | None = None
    """The supernode's worker inbox: a call still running after a moment is announced there."""
    seed: int | None = None


class SlotCall(_Payload, kw_only=True, frozen=True, gc=False):
    """A proposer or synthesizer call (a request: the reply is a :class:`SlotResult`)."""

    slot: str
    call: SlotCallSpec


class SlotResult(_Payload, kw_only=True, frozen=True, gc=False):
    """A finished slot call: its ``llm_call`` record and the text it produced."""

    slot: str
    status: Literal["ok", "error"]
    call: LlmCall
    text: Text = ""


class SlotAccepted(_Payload, kw_only=True, frozen=True, gc=False):
    """Worker ``worker`` took slot call ``slot`` of ``node`` (for failover)."""

    node: str
    slot: str
    worker: str


class WorkerHello(_Payload, kw_only=True, frozen=True, gc=False):
    """A worker's heartbeat, or its goodbye."""

    status: Literal["alive", "bye"] = "alive"
    worker: WorkerId
    nodes: list[str]
    """The node ids it serves (``["*"]``: every node)."""
    group: str | None = None
    inbox: Subject | None = None


class ErrorReply(_Payload, kw_only=True, frozen=True, gc=False):
    """A request that failed: a stable ``code`` and a reason."""

    code: str
    message: str


PAYLOADS: dict[Kind, type[_Payload]] = {
    Kind.NODE_ACTIVATE: NodeActivate,
    Kind.NODE_ARMED: NodeArmed,
    Kind.NODE_ROUTES: NodeRoutes,
    Kind.NODE_INPUT: NodeInput,
    Kind.NODE_OUTPUT: NodeOutput,
    Kind.NODE_PROBE: NodeProbe,
    Kind.NODE_STATE: NodeState,
    Kind.SLOT_CALL: SlotCall,
    Kind.SLOT_RESULT: SlotResult,
    Kind.SLOT_ACCEPTED: SlotAccepted,
    Kind.WORKER_HELLO: WorkerHello,
    Kind.ERROR: ErrorReply,
}
"""The record of each runtime kind."""

assert set(INPUT_OUTPUT_KEYS) <= set(NodeOutputRecord.__struct_fields__)

P = TypeVar("P", bound=_Payload)


def read(envelope: Envelope, record: type[P]) -> P:
    """``envelope``'s payload as ``record``; :class:`WireError` (``payload``) naming the bad
    field otherwise.  msgspec checks every field in C, so this costs a few microseconds."""
    try:
        return msgspec.convert(envelope.payload, record)
    except msgspec.ValidationError as exc:
        raise WireError("payload", f"{envelope.kind.value}: {exc}") from None


def payload(record: _Payload) -> dict[str, Any]:
    """The payload map of ``record`` (shallow: nested records are encoded as they are)."""
    return msgspec.structs.asdict(record)


def split_slot(tag: str) -> tuple[str, int]:
    """``"p0@2"`` -> ``("p0", 2)``; ``ValueError`` unless ``tag`` is ``p<index>@<attempt>``
    or ``synth@<attempt>``."""
    name, at, attempt = tag.partition("@")
    index = name[1:]
    slot_ok = name == "synth" or (name[:1] == "p" and index.isdecimal() and len(index) <= 4)
    if not (at and slot_ok and attempt.isdecimal() and len(attempt) <= 6):
        raise ValueError(f"{tag!r} is not a slot tag (p<index>@<attempt> or synth@<attempt>)")
    return name, int(attempt)
