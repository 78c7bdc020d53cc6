"""Trace events, defined once: every record that goes into the ``HIERAMAS_TRACES`` stream.

Each event is a typed record (a ``msgspec.Struct``), tagged by its ``event``
field, and encodes as a plain msgpack map (``{"event": "llm_call", ...}``)
inside the ``{"events": [...]}`` payload of a ``trace`` envelope
(:mod:`hieramas.traces` batches them).  Emitters build these records and
nothing else; readers (the learner, ``hieramas traces tail``, tests) get them
back with :func:`decode_event` / :func:`decode_trace_message`, which raise only
:class:`EventError`, so a bad record is skipped and counted, never a crash.

=================  ==============================  ======================================
``event``          record                          emitted by
=================  ==============================  ======================================
``llm_call``       :class:`LlmCall`                proposer/synthesizer slots, decision node
``supernode``      :class:`SupernodeRun`           a supernode, once per query it runs
``decision``       :class:`DecisionRun`            the decision node, once per query
``query``          :class:`QueryDone`              the gateway, once per query (also failed ones)
``feedback``       :class:`Feedback`               a user or verifier, any time after the query
=================  ==============================  ======================================

Times are Unix seconds, costs US dollars.  Unknown extra fields in a record
are ignored on decode, so a newer emitter can add fields without breaking
older readers; a missing required field or a wrong type is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from hieramas.wire.envelope import WireError, decode
from hieramas.wire.kinds import Kind

__all__ = [
    "EVENT_TYPES",
    "AssignmentRecord",
    "DecisionRun",
    "Event",
    "EventError",
    "Feedback",
    "LlmCall",
    "NodeModels",
    "QueryDone",
    "SupernodeRun",
    "TopologyRecord",
    "TraceBatch",
    "VoteRecord",
    "VoteRun",
    "decode_event",
    "decode_trace_message",
    "event_json",
]


class EventError(WireError):
    """A trace record (or a whole trace message) that cannot be read; ``code`` says why:
    ``garbled`` (not msgpack, or not a map), ``unknown_event`` (no or unknown ``event``
    tag), ``bad_event`` (a field missing or of the wrong type), or a :class:`WireError`
    code of the envelope around it."""


class _Event(msgspec.Struct, kw_only=True, frozen=True, gc=False, tag_field="event"):
    """Fields every event has.  (``gc=False``: records hold no reference cycles, so the
    collector need not track the thousands a busy process emits.)"""

    query_id: str
    """The query the event belongs to (the join key of an episode)."""
    trace_id: str = ""
    """The query's trace id (one per query; shared by all its events)."""
    span_id: str = ""
    """This event's own id."""

    @property
    def event(self) -> str:
        """The event's tag (``"llm_call"``, ``"supernode"``, ...)."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class LlmCall(_Event, kw_only=True, frozen=True, gc=False, tag="llm_call"):
    """One LLM call made for a query: a proposer or synthesizer slot, or the decision LLM.

    Its cost is this call's own (from its token counts and its model's prices), so the
    sum of a query's ``llm_call`` costs is the query's cost whatever else runs at once.
    """

    config_version: int
    """The config version the query was planned with."""
    parent_span: str = ""
    """The span of the request that asked for the call."""
    node: str
    """The supernode id, or ``"decision"``."""
    role: str
    """The supernode's role (``"decision"`` for the decision LLM)."""
    slot: str
    """``"p0"``, ``"p1"``, ... (proposer slot), ``"synth"``, or ``"decision"``."""
    attempt: int = 1
    """1, or more when the call was sent again (its first taker was lost or never took it);
    a superseded attempt's call is traced too, and its cost is not in the query's result."""
    worker: str
    """The worker process that made the call."""
    model: str
    """The LLM's name in the config's pool."""
    model_id: str
    """The model id at the endpoint."""
    endpoint: str
    """The endpoint's name in the config."""
    started: float
    finished: float
    outcome: Literal["ok", "error"]
    error: str | None = None
    """Why the call failed (``None`` when ``outcome`` is ``ok``)."""
    error_kind: str | None = None
    """The failure's class: an LLM error kind (``timeout``, ``rate_limit``, ...) or an
    exception type name."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    ttft_s: float | None = None
    """Time to the first token (streamed calls only)."""
    usage_estimated: bool = False
    """The endpoint reported no usage: tokens (and so cost) were counted locally."""
    cached: bool = False
    """Answered from the response cache (no endpoint call)."""


class NodeModels(msgspec.Struct, frozen=True, gc=False):
    """The LLMs a supernode ran with for one query."""

    proposers: list[str | None]
    """One entry per proposer slot: the LLM's pool name, ``None`` for a skipped slot."""
    synthesizer: str
    """The synthesizer LLM, or ``vote`` / ``pass`` (no call)."""


class SupernodeRun(_Event, kw_only=True, frozen=True, gc=False, tag="supernode"):
    """One supernode's work for one query: its proposers and its synthesizer."""

    config_version: int
    node: str
    role: str
    status: Literal["ok", "error"]
    """``ok`` when the synthesizer produced the node's output."""
    answer: str | None = None
    """The node's output parsed for the query's domain (by
    :func:`hieramas.tasks.answers.extract_answer`, once, where the output is made):
    ``None`` when unparseable, failed, or the role gives no answer (``answerless``)."""
    answerless: bool = False
    """The role produces no gradable answer (e.g. a project manager)."""
    error: str | None = None
    failures: list[str] = []
    """One ``"<slot>: <error>"`` per failed call; proposer failures do not fail the node."""
    models: NodeModels
    vote: dict[str, Any] | None = None
    """How a ``vote`` synthesizer chose, when it did."""
    proposals_used: int = 0
    """Successful proposals the synthesizer read."""
    started: float | None = None
    finished: float = 0.0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    """The sum of this node's own calls (its proposers and synthesizer)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    worker: str = ""


class DecisionRun(_Event, kw_only=True, frozen=True, gc=False, tag="decision"):
    """The decision node's work for one query: the final answer and how it was reached."""

    config_version: int
    node: str = "decision"
    role: str = "decision"
    status: Literal["ok", "error"]
    answer: str | None = None
    """The final answer, parsed for the query's domain."""
    decided_by: str
    """``agreement`` (the supernodes agreed: no call), ``vote``, ``llm``, or
    ``alone_all_skipped`` / ``alone_all_failed`` (the decision LLM answered alone)."""
    vote: dict[str, Any] | None = None
    error: str | None = None
    failures: list[str] = []
    model: str | None = None
    """The decision LLM, when it made a call."""
    started: float | None = None
    finished: float = 0.0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    worker: str = ""


class AssignmentRecord(msgspec.Struct, frozen=True, gc=False):
    """The full per-slot assignment a query was planned with (every supernode of the
    config, skipped ones included)."""

    proposers: dict[str, list[str]]
    """Supernode -> one LLM per proposer slot (``"skip"``: the slot makes no call)."""
    synthesizers: dict[str, str]
    """Supernode -> its synthesizer LLM, ``vote``, ``pass``, or ``"skip"`` (node dropped)."""
    decision: str
    """The decision LLM, or ``vote``."""


class TopologyRecord(msgspec.Struct, frozen=True, gc=False):
    """How a Stage-2 planner chose the query's DAG: which classifier scored how many candidate
    DAGs, and the executed DAG's score and rank among them (1: the best)."""

    classifier_version: int
    candidates: int
    """How many candidate DAGs were scored."""
    score: float
    """The classifier's score of the executed DAG."""
    rank: int = 1
    """The executed DAG's rank by score (1 for top-1; a top-k vote runs ranks 1..k)."""


class VoteRun(msgspec.Struct, frozen=True, gc=False):
    """One DAG a top-k vote ran for a query: its own run id, its rank by score, what it said."""

    run_id: str
    """The run's query id on the wire (its node and ``llm_call`` events carry it)."""
    rank: int
    """The DAG's rank by the classifier's score (1: the best)."""
    edges: list[tuple[str, str]]
    """The DAG's active edges: what the run executed."""
    status: str
    """``ok``, ``error`` or a failure code (``timeout``, ...): only ``ok`` runs vote."""
    answer: str | None = None
    score: float | None = None
    cost_usd: float = 0.0
    latency_s: float = 0.0


class VoteRecord(msgspec.Struct, frozen=True, gc=False):
    """A query answered by a top-k vote: the runs (best-ranked first) and the one chosen."""

    runs: list[VoteRun]
    chosen: int | None = None
    """The winning run's rank (the most common answer, ties to the best-ranked);
    ``None``: no run answered."""


class QueryDone(_Event, kw_only=True, frozen=True, gc=False, tag="query"):
    """One query's outcome, with what a learner needs to replay and grade it."""

    config_version: int = 0
    """The config version it was planned with (0: it failed before it had one)."""
    parent_span: str = ""
    """The caller's span (from the query's W3C ``traceparent``), or empty: the query's
    workflow span is then a root span of its trace."""
    started: float | None = None
    """When the gateway took the query (``finished - latency_s`` for older streams)."""
    finished: float = 0.0
    status: str
    """``ok``, ``error`` (the decision failed), or a failure code (``timeout``,
    ``no_worker``, ``bad_query``, ``internal``, ``oversize``, ...)."""
    error: str | None = None
    answer: str | None = None
    """The final answer, parsed for ``domain``."""
    text: str | None = None
    """The final answer's text (what a grader reads, e.g. code)."""
    decided_by: str | None = None
    domain: str | None = None
    item_id: str | None = None
    """The dataset item the query asks, when the client named one (the grading key)."""
    emulated: bool = False
    """Some LLM was served by the emulator: figures describe the emulator."""
    cost_usd: float = 0.0
    """The sum of the calls the query's result used (its nodes' ``cost_usd``, each the sum
    of the node's own calls), never a shared counter.  A call superseded by a retry (its
    worker was lost) has an ``llm_call`` event but is not counted here: the sum of a
    query's ``llm_call`` events is all it spent."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    skipped_nodes: list[str] = []
    """Supernodes the plan dropped (synthesizer ``skip``)."""
    failures: list[str] = []
    planner: str | None = None
    """The planner kind that planned it (``static``, ``learned``, ...)."""
    policy_version: int | None = None
    """The policy version that planned it; ``None`` for static planning (or a learned
    planner with no policy loaded yet)."""
    sampled: bool = False
    """The assignment was sampled from the policy for training (exploration), not greedy."""
    assignment: AssignmentRecord | None = None
    """The full per-slot assignment; ``None`` when the query failed before planning."""
    edges: list[tuple[str, str]] = []
    """The active edges: those between supernodes the plan kept."""
    task_text: str | None = None
    """The text the planner read (a learner embeds it again to train); set only when a
    policy planned the query, so static queries keep the stream small."""
    temperature: float | None = None
    """The temperature a ``sampled`` assignment was drawn at."""
    log_probs: list[float] | None = None
    """A ``sampled`` assignment's per-slot log-probabilities, in the policy's slot order."""
    query_embedding: bytes | None = None
    """A ``sampled`` assignment's query embedding as the policy read it (float16,
    little-endian): a learner whose embedder is ``embedder`` trains on it instead of
    embedding ``task_text`` again (the planner already paid for that embedding)."""
    embedder: str | None = None
    """The embedder that made ``query_embedding``."""
    topology: TopologyRecord | None = None
    """How a Stage-2 planner chose the DAG (``None``: the DAG was not a classifier's choice)."""
    vote: VoteRecord | None = None
    """A top-k vote's runs and choice (``None``: one DAG ran); ``edges`` and ``topology``
    are then the chosen run's, ``cost_usd`` the sum of the runs', ``latency_s`` the slowest's."""


class Feedback(_Event, kw_only=True, frozen=True, gc=False, tag="feedback"):
    """A score for a finished query, given after the fact by a user or a verifier."""

    score: float
    """The score (the learner defines its scale; e.g. 1.0 correct, 0.0 wrong)."""
    source: str
    """Who scored it: ``user``, or ``verifier:<name>``."""
    comment: str | None = None
    ts: float = 0.0
    """When it was given."""


Event = LlmCall | SupernodeRun | DecisionRun | QueryDone | Feedback
"""Any trace event."""

EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (LlmCall, SupernodeRun, DecisionRun, QueryDone, Feedback)
}
"""Event tag -> record type."""


@dataclass(frozen=True, slots=True)
class TraceBatch:
    """The readable events of one trace message, and an error for each record that was not."""

    events: list[Event]
    errors: list[EventError]


_event_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
_json_encoder = msgspec.json.Encoder()


def decode_event(raw: bytes | Mapping[str, Any]) -> Event:
    """One event from its msgpack bytes or its decoded map; :class:`EventError` if it is bad."""
    try:
        if isinstance(raw, bytes | bytearray | memoryview):
            return _event_decoder.decode(raw)
        return msgspec.convert(raw, Event)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise _classify(raw, exc) from None
    except msgspec.DecodeError as exc:
        raise EventError("garbled", f"not a msgpack event: {exc}") from None


def _classify(raw: object, exc: Exception) -> EventError:
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = msgspec.msgpack.decode(raw)
        except msgspec.DecodeError:
            return EventError("garbled", f"not a msgpack event: {exc}")
    if not isinstance(raw, Mapping):
        return EventError("garbled", f"an event must be a map, not {type(raw).__name__}")
    tag = raw.get("event")
    if tag not in EVENT_TYPES:
        return EventError("unknown_event", f"unknown trace event {tag!r}")
    return EventError("bad_event", f"{tag}: {exc}")


def decode_trace_message(data: bytes) -> TraceBatch:
    """The events of one message of the trace stream.

    A message that is not a ``trace`` envelope raises :class:`WireError` (its code says
    why); within a good one, each bad record becomes an :class:`EventError` in
    ``errors`` and the others are still returned, in order.
    """
    envelope = decode(data)
    if envelope.kind is not Kind.TRACE:
        raise EventError("kind", f"expected a trace message, got {envelope.kind.value}")
    raw = envelope.payload["events"]
    if not isinstance(raw, list):
        raise EventError("garbled", f"'events' must be a list, not {type(raw).__name__}")
    events: list[Event] = []
    errors: list[EventError] = []
    for record in raw:
        try:
            events.append(decode_event(record))
        except EventError as exc:
            errors.append(exc)
    return TraceBatch(events=events, errors=errors)


def event_json(event: Event) -> str:
    """One event as a JSON object (its ``event`` tag first), for JSON lines."""
    return _json_encoder.encode(event).decode()
