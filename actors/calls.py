"""Starting LLM calls from actors and turning their outcome into ``llm_call`` trace events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hieramas.actors.context import WorkerContext
from hieramas.actors.messages import CallDone
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError, Message, ModelSpec
from hieramas.wire import Envelope, new_id
from hieramas.wire.events import LlmCall

__all__ = ["call_record", "start_llm_call", "traced_call"]


def start_llm_call(
    ctx: WorkerContext,
    on_done: Callable[[CallDone], None],
    *,
    query_id: str,
    tag: str,
    model: ModelSpec,
    endpoint: EndpointSpec,
    messages: list[Message],
    max_tokens: int,
    temperature: float,
    deadline_unix: float,
    seed: int | None = None,
) -> None:
    """Run one chat call on the bus loop; ``on_done`` gets its :class:`CallDone` there."""
    started = time.time()
    remaining = max(deadline_unix - started, 0.0)
    request = ChatRequest(
        model=model, messages=messages, temperature=temperature, max_tokens=max_tokens, seed=seed
    )
    deadline = time.monotonic() + remaining

    def done(result: Any) -> None:
        on_done(CallDone(query_id=query_id, tag=tag, result=result, started=started))

    ctx.bus.submit(ctx.llm.chat(request, endpoint, deadline=deadline), done)


def call_record(
    done: CallDone,
    model: ModelSpec,
    *,
    trace_id: str,
    parent_span: str,
    config_version: int,
    node: str,
    role: str,
    slot: str,
    attempt: int,
    worker: str,
) -> tuple[LlmCall, str]:
    """The ``llm_call`` trace event of one finished call, and the text it produced."""
    finished = time.time()
    result = done.result
    common: dict[str, Any] = {
        "query_id": done.query_id,
        "trace_id": trace_id,
        "span_id": new_id(),
        "parent_span": parent_span,
        "config_version": config_version,
        "node": node,
        "role": role,
        "slot": slot,
        "attempt": attempt,
        "worker": worker,
        "model": model.name,
        "model_id": model.model_id,
        "endpoint": model.endpoint,
        "started": done.started,
        "finished": finished,
    }
    if isinstance(result, BaseException):
        kind = result.kind if isinstance(result, LLMError) else type(result).__name__
        return LlmCall(
            **common,
            outcome="error",
            error=f"{model.name}: {result}",
            error_kind=kind,
            latency_s=finished - done.started,
        ), ""
    return LlmCall(
        **common,
        outcome="ok",
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost_usd=result.cost_usd,
        latency_s=result.latency_s,
        ttft_s=result.ttft_s,
        usage_estimated=result.usage_estimated,
        cached=result.cached,
    ), result.text


def traced_call(
    ctx: WorkerContext,
    done: CallDone,
    model: ModelSpec,
    ids: Envelope,
    site: tuple[str, str, str, int],
) -> tuple[LlmCall, str]:
    """Emit the ``llm_call`` event (:func:`call_record`) of a finished call, parented by the
    span of ``ids`` (a slot call's request, or the query's activation for a call made in
    process); the event and the text.  ``site`` is the call's (node, role, slot, attempt)."""
    node, role, slot, attempt = site
    event, text = call_record(
        done,
        model,
        trace_id=ids.trace_id,
        parent_span=ids.span_id,
        config_version=ids.config_version,
        node=node,
        role=role,
        slot=slot,
        attempt=attempt,
        worker=ctx.worker_id,
    )
    ctx.traces.emit(event)
    return event, text
