"""Trace events as OpenTelemetry spans, following the GenAI semantic conventions.

One query is one trace.  Its spans, parent first::

    invoke_workflow hieramas            the query (``query`` event), child of the caller's
    ├── invoke_agent <supernode>        span when the query carried a ``traceparent``
    │   ├── invoke_agent <node>.p0      one per proposer / synthesizer call (``llm_call``)
    │   │   └── chat <model id>         the LLM call itself
    │   └── invoke_agent <node>.synth
    │       └── chat <model id>
    └── invoke_agent decision           the decision node (``decision`` event)
        └── chat <model id>             its LLM call, when it made one

Every span's id is derived from the query and the span's place in that tree (a hash), never
drawn at random, so each event becomes its spans on its own, in any order, from any process:
the exporter keeps no per-query state and an event delivered twice gives the same spans.
Times are the events' own.  Message content (the task, answers) is only added with
``content=True``; error messages go through the log redaction first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hieramas.logs import redact_secrets
from hieramas.wire.events import DecisionRun, Event, LlmCall, QueryDone, SupernodeRun
from hieramas.wire.subjects import DECISION_NODE

__all__ = [
    "PROVIDER",
    "WORKFLOW",
    "SpanRecord",
    "as_mapping",
    "span_id_of",
    "span_records",
    "trace_id_of",
]

WORKFLOW = "hieramas"
"""The workflow's ``gen_ai.agent.name`` (the span is ``invoke_workflow hieramas``)."""

PROVIDER = "openai"
"""``gen_ai.provider.name`` of every call: HieraMAS speaks the OpenAI chat API to every
endpoint; ``hieramas.endpoint`` says which one."""

AttrValue = str | bool | int | float | Sequence[str]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span, ready for an OpenTelemetry exporter (ids as ints, times in Unix ns)."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    """``None``: a root span."""
    parent_remote: bool
    """The parent is the caller's span (in another process), not one of ours."""
    kind: str
    """``internal`` or ``client`` (an LLM call)."""
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    error: str | None = None
    """The status description of a failed span (``None``: the span succeeded)."""


def trace_id_of(event: Event) -> int:
    """The event's trace id as OpenTelemetry's 128-bit int (a 16- or 32-hex id is used as it
    is; anything else, e.g. an empty one, is hashed with the query id)."""
    tid = event.trace_id
    if len(tid) in (16, 32):
        try:
            value = int(tid, 16)
        except ValueError:
            value = 0
        if value:
            return value
    return _hash(16, "trace", tid, event.query_id)


def span_id_of(query_id: str, *path: object) -> int:
    """The 64-bit id of the span at ``path`` in a query's tree."""
    return _hash(8, query_id, *path)


def _hash(size: int, *parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).digest()
    return int.from_bytes(digest, "big") or 1  # zero is OpenTelemetry's invalid id


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _window(
    started: float | None, finished: float, latency_s: float, fallback: float
) -> tuple[int, int]:
    """(start, end) in ns; an event without times (an older stream) ends at ``fallback``."""
    end = finished or (started + latency_s if started else fallback)
    start = started if started else end - latency_s
    return _ns(start), _ns(max(end, start))


def _redacted(text: str | None) -> str | None:
    if text is None:
        return None
    return str(redact_secrets(None, "", {"error": text})["error"])


def _messages(role: str, text: str | None) -> str:
    """A GenAI ``*.messages`` attribute value (JSON) holding one text message."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text or ""}]}])


def span_records(
    event: Event, *, content: bool = False, fallback_time: float = 0.0
) -> list[SpanRecord]:
    """The spans one trace event stands for (none for ``feedback``).

    ``fallback_time`` (Unix s) dates an event of an older stream that carries no finish time
    (the stream's store time of its message is the best guess)."""
    if isinstance(event, LlmCall):
        return _call_spans(event, content, fallback_time)
    if isinstance(event, SupernodeRun | DecisionRun):
        return [_node_span(event, content, fallback_time)]
    if isinstance(event, QueryDone):
        workflow = _workflow_span(event, content, fallback_time)
        return [workflow, *_vote_spans(event, workflow)]
    return []


def _vote_spans(event: QueryDone, workflow: SpanRecord) -> list[SpanRecord]:
    """A top-k vote's runs, one span each under the query's: its nodes' spans hang under
    the run they ran in (their events carry the run's id)."""
    if event.vote is None:
        return []
    spans = []
    for run in event.vote.runs:
        attributes: dict[str, AttrValue] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.agent.name": WORKFLOW,
            "openinference.span.kind": "CHAIN",
            "hieramas.query_id": run.run_id,
            "hieramas.vote_rank": run.rank,
            "hieramas.vote_chosen": run.rank == event.vote.chosen,
            "hieramas.status": run.status,
            "hieramas.cost_usd": run.cost_usd,
        }
        _put(attributes, "hieramas.answer", run.answer)
        if run.status != "ok":
            attributes["error.type"] = run.status
        spans.append(
            SpanRecord(
                name=f"invoke_workflow {WORKFLOW} vote {run.rank}",
                trace_id=workflow.trace_id,
                span_id=span_id_of(run.run_id, "query"),
                parent_id=workflow.span_id,
                parent_remote=False,
                kind="internal",
                start_ns=workflow.start_ns,
                end_ns=min(workflow.start_ns + _ns(run.latency_s), workflow.end_ns),
                attributes=attributes,
                error=run.status if run.status != "ok" else None,
            )
        )
    return spans


def _workflow_span(event: QueryDone, content: bool, fallback: float) -> SpanRecord:
    parent: int | None = None
    if event.parent_span:
        try:
            parent = int(event.parent_span, 16) or None
        except ValueError:
            parent = None
    start, end = _window(event.started, event.finished, event.latency_s, fallback)
    attributes: dict[str, AttrValue] = {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.agent.name": WORKFLOW,
        "gen_ai.usage.input_tokens": event.prompt_tokens,
        "gen_ai.usage.output_tokens": event.completion_tokens,
        "openinference.span.kind": "CHAIN",
        "hieramas.query_id": event.query_id,
        "hieramas.status": event.status,
        "hieramas.config_version": event.config_version,
        "hieramas.cost_usd": event.cost_usd,
        "hieramas.emulated": event.emulated,
        "hieramas.sampled": event.sampled,
    }
    _put(attributes, "hieramas.policy_version", event.policy_version)
    _put(attributes, "hieramas.planner", event.planner)
    _put(attributes, "hieramas.domain", event.domain)
    _put(attributes, "hieramas.item_id", event.item_id)
    _put(attributes, "hieramas.decided_by", event.decided_by)
    if event.skipped_nodes:
        attributes["hieramas.skipped_nodes"] = list(event.skipped_nodes)
    if content:
        if event.task_text is not None:
            attributes["gen_ai.input.messages"] = _messages("user", event.task_text)
        attributes["gen_ai.output.messages"] = _messages("assistant", event.text or event.answer)
    failed = event.status != "ok"
    if failed:
        attributes["error.type"] = event.status
    return SpanRecord(
        name=f"invoke_workflow {WORKFLOW}",
        trace_id=trace_id_of(event),
        span_id=span_id_of(event.query_id, "query"),
        parent_id=parent,
        parent_remote=parent is not None,
        kind="internal",
        start_ns=start,
        end_ns=end,
        attributes=attributes,
        error=(_redacted(event.error) or event.status) if failed else None,
    )


def _node_span(event: SupernodeRun | DecisionRun, content: bool, fallback: float) -> SpanRecord:
    start, end = _window(event.started, event.finished, event.latency_s, fallback)
    attributes: dict[str, AttrValue] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": event.node,
        "gen_ai.usage.input_tokens": event.prompt_tokens,
        "gen_ai.usage.output_tokens": event.completion_tokens,
        "openinference.span.kind": "AGENT",
        "hieramas.query_id": event.query_id,
        "hieramas.node": event.node,
        "hieramas.role": event.role,
        "hieramas.config_version": event.config_version,
        "hieramas.cost_usd": event.cost_usd,
        "hieramas.worker": event.worker,
    }
    if isinstance(event, DecisionRun):
        attributes["hieramas.decided_by"] = event.decided_by
        _put(attributes, "gen_ai.request.model", event.model)
    else:
        attributes["hieramas.synthesizer"] = event.models.synthesizer
        attributes["hieramas.proposals_used"] = event.proposals_used
    if event.failures:
        attributes["hieramas.failures"] = [str(_redacted(f)) for f in event.failures]
    if content:
        attributes["gen_ai.output.messages"] = _messages("assistant", event.answer)
    failed = event.status != "ok"
    if failed:
        attributes["error.type"] = "node_failed"
    return SpanRecord(
        name=f"invoke_agent {event.node}",
        trace_id=trace_id_of(event),
        span_id=span_id_of(event.query_id, "node", event.node),
        parent_id=span_id_of(event.query_id, "query"),
        parent_remote=False,
        kind="internal",
        start_ns=start,
        end_ns=end,
        attributes=attributes,
        error=(_redacted(event.error) or "failed") if failed else None,
    )


def _call_spans(event: LlmCall, content: bool, fallback: float) -> list[SpanRecord]:
    """The ``chat`` span of one LLM call, under an ``invoke_agent`` span of its proposer or
    synthesizer slot (the decision node's call hangs under the decision node's span)."""
    del content  # calls carry no message text in the stream
    trace_id = trace_id_of(event)
    node_span = span_id_of(event.query_id, "node", event.node)
    start, end = _window(event.started, event.finished, event.latency_s, fallback)
    failed = event.outcome != "ok"
    error = (_redacted(event.error) or "failed") if failed else None
    common: dict[str, AttrValue] = {
        "hieramas.query_id": event.query_id,
        "hieramas.node": event.node,
        "hieramas.role": event.role,
        "hieramas.slot": event.slot,
        "hieramas.attempt": event.attempt,
        "hieramas.worker": event.worker,
        "hieramas.config_version": event.config_version,
    }
    spans: list[SpanRecord] = []
    parent = node_span
    if event.node != DECISION_NODE:
        agent = f"{event.node}.{event.slot}"
        parent = span_id_of(event.query_id, "slot", event.node, event.slot, event.attempt)
        slot_attributes: dict[str, AttrValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.request.model": event.model_id,
            "openinference.span.kind": "AGENT",
            **common,
        }
        if failed:
            slot_attributes["error.type"] = event.error_kind or "error"
        spans.append(
            SpanRecord(
                name=f"invoke_agent {agent}",
                trace_id=trace_id,
                span_id=parent,
                parent_id=node_span,
                parent_remote=False,
                kind="internal",
                start_ns=start,
                end_ns=end,
                attributes=slot_attributes,
                error=error,
            )
        )
    attributes: dict[str, AttrValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": event.model_id,
        "openinference.span.kind": "LLM",
        **common,
        "hieramas.model": event.model,
        "hieramas.endpoint": event.endpoint,
        "hieramas.cost_usd": event.cost_usd,
        "hieramas.cached": event.cached,
        "hieramas.usage_estimated": event.usage_estimated,
    }
    if failed:
        attributes["error.type"] = event.error_kind or "error"
    else:
        attributes["gen_ai.response.model"] = event.model_id
        attributes["gen_ai.usage.input_tokens"] = event.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = event.completion_tokens
    _put(attributes, "hieramas.ttft_s", event.ttft_s)
    spans.append(
        SpanRecord(
            name=f"chat {event.model_id}",
            trace_id=trace_id,
            span_id=span_id_of(event.query_id, "chat", event.node, event.slot, event.attempt),
            parent_id=parent,
            parent_remote=False,
            kind="client",
            start_ns=start,
            end_ns=end,
            attributes=attributes,
            error=error,
        )
    )
    return spans


def _put(attributes: dict[str, AttrValue], key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is ``None`` (OpenTelemetry attributes cannot be null)."""
    if value is not None:
        attributes[key] = value


def as_mapping(record: SpanRecord) -> Mapping[str, Any]:
    """A span as a plain map (for tests and debugging)."""
    return {
        "name": record.name,
        "trace_id": f"{record.trace_id:032x}",
        "span_id": f"{record.span_id:016x}",
        "parent_id": f"{record.parent_id:016x}" if record.parent_id is not None else None,
        "attributes": dict(record.attributes),
        "error": record.error,
    }
