"""stream=True: server-sent events, true time to first token, quirks (respx + loopback)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx

from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.loopback import LoopbackLLM
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError, ModelSpec

Body = Callable[..., dict[str, Any]]
SSE = {"content-type": "text/event-stream"}


def _sse(*events: object) -> bytes:
    out = [": keep-alive comment\n\n"]
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}\n\n")
    return "".join(out).encode()


def _delta(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"model": "served", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as srv:
        yield srv


async def test_stream_against_real_server_measures_first_token(server: LoopbackLLM) -> None:
    endpoint = EndpointSpec("loop", server.base_url)
    model = ModelSpec("pool", "ttft-150", "loop", price_in_per_m=1.0, price_out_per_m=1.0)
    request = ChatRequest(model, [{"role": "user", "content": "tell me three words"}])
    async with OpenAIChatClient(stream=True) as client:
        result = await client.chat(request, endpoint)
    sent = server.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert result.text == "ok: tell me three words"
    assert (result.prompt_tokens, result.completion_tokens) == (7, 3)
    assert not result.usage_estimated
    assert result.ttft_s is not None and 0.15 <= result.ttft_s <= result.latency_s
    assert result.extra["finish_reason"] == "stop"


async def test_stream_without_usage_is_estimated_and_json_reply_still_works(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec, chat_body: Body, chat_url: str
) -> None:
    async with OpenAIChatClient(stream=True) as client:
        with respx.mock:
            respx.post(chat_url).respond(
                200,
                headers=SSE,
                content=_sse(
                    {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
                    _delta("Hel"),
                    _delta("lo"),
                    _delta(None, "stop"),
                    "[DONE]",
                ),
            )
            streamed = await client.chat(chat_request, chat_endpoint)
            respx.post(chat_url).respond(200, json=chat_body("plain", {"prompt_tokens": 2}))
            plain = await client.chat(chat_request, chat_endpoint)
    assert streamed.text == "Hello" and streamed.usage_estimated
    assert streamed.extra["served_model"] == "served"
    assert plain.text == "plain" and plain.prompt_tokens == 2 and plain.usage_estimated


@pytest.mark.parametrize(
    ("content", "kind", "match"),
    [
        (_sse(_delta("partial")), "malformed", "ended before"),
        (_sse("{not json"), "malformed", "not JSON"),
        (_sse({"error": {"message": "upstream died", "code": 502}}), "http", "upstream died"),
    ],
    ids=["truncated", "garbage", "error-event"],
)
async def test_stream_failures(
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
    content: bytes,
    kind: str,
    match: str,
) -> None:
    async with OpenAIChatClient(stream=True, breaker_failures=100) as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, headers=SSE, content=content)
            with pytest.raises(LLMError, match=match) as info:
                await client.chat(
                    chat_request, EndpointSpec("ep", chat_endpoint.base_url, max_retries=0)
                )
    assert info.value.kind == kind
    assert route.call_count == 1
