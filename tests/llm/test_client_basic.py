"""OpenAIChatClient: happy path, accounting, timeouts and error mapping (respx)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.tokens import estimate_prompt_tokens, estimate_tokens
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError, ModelSpec

Body = Callable[..., dict[str, Any]]


async def test_happy_path_accounting_and_request_shape(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    with respx.mock:
        route = respx.post(chat_url).respond(200, json=chat_body("Hello!", usage))
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.text == "Hello!"
    assert result.model == "m1"
    assert (result.prompt_tokens, result.completion_tokens) == (12, 3)
    assert result.cost_usd == pytest.approx((12 * 1.0 + 3 * 2.0) / 1e6)
    assert not result.usage_estimated and not result.cached
    assert result.latency_s >= 0 and result.ttft_s is not None
    assert 0 <= result.ttft_s <= result.latency_s
    assert result.extra["served_model"] == "served/model"
    assert result.extra["finish_reason"] == "stop"
    assert result.extra["attempts"] == 1
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "org/model-1",
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0.0,
    }
    assert "authorization" not in route.calls.last.request.headers
    assert route.calls.last.request.headers["user-agent"].startswith("hieramas/")


async def test_optional_sampling_params_and_auth_header(
    chat_model: ModelSpec, chat_body: Body, chat_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-123")
    endpoint = EndpointSpec("ep", "http://llm.test/v1/", api_key_env="TEST_LLM_KEY")
    request = ChatRequest(
        chat_model, [{"role": "user", "content": "x"}], temperature=0.7, max_tokens=5, seed=9
    )
    async with OpenAIChatClient() as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, json=chat_body("y"))
            await client.chat(request, endpoint)
    sent = json.loads(route.calls.last.request.content)
    assert sent["max_tokens"] == 5 and sent["seed"] == 9 and sent["temperature"] == 0.7
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-secret-123"


async def test_openrouter_gets_attribution_headers(chat_model: ModelSpec, chat_body: Body) -> None:
    endpoint = EndpointSpec("or", "https://openrouter.ai/api/v1")
    async with OpenAIChatClient(app_name="HM-test", app_url="https://example.org") as client:
        with respx.mock:
            route = respx.post("https://openrouter.ai/api/v1/chat/completions").respond(
                200, json=chat_body("ok")
            )
            await client.chat(ChatRequest(chat_model, [{"role": "user", "content": "q"}]), endpoint)
    headers = route.calls.last.request.headers
    assert headers["x-title"] == "HM-test"
    assert headers["http-referer"] == "https://example.org"


@pytest.mark.parametrize(
    "usage",
    [None, {"prompt_tokens": None, "completion_tokens": None}, {"total_tokens": 4}],
    ids=["missing", "nulls", "partial"],
)
async def test_missing_usage_is_estimated(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
    usage: dict[str, Any] | None,
) -> None:
    with respx.mock:
        respx.post(chat_url).respond(200, json=chat_body("Hello there, world!", usage))
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.usage_estimated
    assert result.prompt_tokens == estimate_prompt_tokens(chat_request.messages) > 0
    assert result.completion_tokens == estimate_tokens("Hello there, world!") > 0
    assert result.cost_usd == pytest.approx(
        chat_request.model.cost(result.prompt_tokens, result.completion_tokens)
    )


async def test_extra_fields_and_content_parts_are_tolerated(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "reasoning_content": "hmm",
                },
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "prompt_tokens_details": {}},
        "system_fingerprint": "x",
        "timings": {"predicted_ms": 1.0},
    }
    with respx.mock:
        respx.post(chat_url).respond(200, json=body)
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.text == "ab"
    assert (result.prompt_tokens, result.completion_tokens) == (1, 2)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<html>bad gateway</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"id": "x"}', "no choices"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"index": 0}]}', "no message"),
    ],
)
async def test_malformed_responses(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
    content: bytes,
    match: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(200, content=content)
        with pytest.raises(LLMError, match=match) as info:
            await chat_client.chat(chat_request, chat_endpoint)
    assert info.value.kind == "malformed"
    assert route.call_count == 1  # not retried
    assert chat_client.metrics()["ep"]["errors"] == {"malformed": 1}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_non_retryable_4xx_fails_at_once(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
    status: int,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(
            status, json={"error": {"message": "model not found", "code": status}}
        )
        with pytest.raises(LLMError) as info:
            await chat_client.chat(chat_request, chat_endpoint)
    assert route.call_count == 1
    assert info.value.kind == "http" and info.value.status == status
    assert "model not found" in str(info.value)
    assert chat_client.breaker("ep") is not None
    assert chat_client.breaker("ep").state == "closed"  # type: ignore[union-attr]


async def test_error_object_in_200_body(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(
            200, json={"error": {"message": "No endpoints found", "code": 404}}
        )
        with pytest.raises(LLMError, match="No endpoints found") as info:
            await chat_client.chat(chat_request, chat_endpoint)
    assert info.value.kind == "http" and info.value.status == 404
    assert route.call_count == 1


async def test_per_call_timeout_retries_then_fails(
    chat_request: ChatRequest, chat_body: Body, chat_url: str, chat_retry: Any
) -> None:
    endpoint = EndpointSpec("slow", "http://llm.test/v1", timeout_s=0.05, max_retries=2)
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)
        return httpx.Response(200, json=chat_body())

    async with OpenAIChatClient(retry=chat_retry) as client:
        with respx.mock:
            respx.post(chat_url).mock(side_effect=hang)
            with pytest.raises(LLMError, match=r"timeout_s=0\.05") as info:
                await client.chat(chat_request, endpoint)
        metrics = client.metrics()["slow"]
    assert info.value.kind == "timeout"
    assert calls == 3
    assert metrics["retries"] == 2 and metrics["attempts"] == 3
    assert metrics["errors"] == {"timeout": 1}


async def test_connection_error_is_retried_then_reported(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec, chat_url: str, chat_retry: Any
) -> None:
    async with OpenAIChatClient(retry=chat_retry, breaker_failures=10) as client:
        with respx.mock:
            route = respx.post(chat_url).mock(side_effect=httpx.ConnectError("refused"))
            with pytest.raises(LLMError, match="ConnectError") as info:
                await client.chat(chat_request, chat_endpoint)
    assert info.value.kind == "connection"
    assert route.call_count == chat_endpoint.max_retries + 1


async def test_deadline_already_passed(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(200, json={})
        with pytest.raises(LLMError) as info:
            await chat_client.chat(chat_request, chat_endpoint, deadline=time.monotonic() - 1)
    assert info.value.kind == "deadline"
    assert route.call_count == 0


async def test_deadline_shorter_than_timeout_cuts_the_call(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    started = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal started
        started += 1
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    with respx.mock:
        respx.post(chat_url).mock(side_effect=hang)
        deadline = time.monotonic() + 0.3
        with pytest.raises(LLMError) as info:
            await chat_client.chat(chat_request, chat_endpoint, deadline=deadline)
    assert info.value.kind == "deadline"
    assert time.monotonic() < deadline + 1.0  # returned near the deadline, not after 10 s
    assert started == 1  # a deadline is not retried


async def test_bad_requests_raise_value_error(
    chat_client: OpenAIChatClient, chat_model: ModelSpec, chat_endpoint: EndpointSpec
) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        await chat_client.chat(ChatRequest(chat_model, []), chat_endpoint)
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        await chat_client.chat(ChatRequest(chat_model, [{"role": "user"}]), chat_endpoint)


async def test_missing_api_key_env_is_a_clear_error(chat_request: ChatRequest) -> None:
    endpoint = EndpointSpec("keyed", "http://llm.test/v1", api_key_env="HIERAMAS_TEST_UNSET_KEY")
    async with OpenAIChatClient() as client:
        with pytest.raises(LLMError, match="HIERAMAS_TEST_UNSET_KEY"):
            await client.chat(chat_request, endpoint)


async def test_complete_uses_registered_endpoint(
    chat_client: OpenAIChatClient, chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    with respx.mock:
        respx.post(chat_url).respond(200, json=chat_body("via complete"))
        result = await chat_client.complete(chat_request)
    assert result.text == "via complete"


async def test_closed_client_refuses(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec
) -> None:
    client = OpenAIChatClient()
    await client.aclose()
    with pytest.raises(LLMError, match="closed"):
        await client.chat(chat_request, chat_endpoint)
