"""Retries: Retry-After, 5xx then success, deadline-bounded backoff (respx)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from hieramas.llm.client import OpenAIChatClient, RetryPolicy
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError

Body = Callable[..., dict[str, Any]]


def _retry_sleeps(logs: list[dict[str, Any]]) -> list[float]:
    return [e["sleep_s"] for e in logs if e["event"] == "llm_retry"]


async def test_429_with_retry_after_seconds_is_honoured(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    with respx.mock, capture_logs() as logs:
        route = respx.post(chat_url).mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "0.05"}, json={"error": "slow down"}),
                httpx.Response(200, json=chat_body("fine")),
            ]
        )
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.text == "fine" and result.extra["attempts"] == 2
    assert route.call_count == 2
    assert _retry_sleeps(logs) == [0.05]
    assert chat_client.metrics()["ep"]["retries"] == 1


async def test_retry_after_ms_and_http_date(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    with respx.mock, capture_logs() as logs:
        respx.post(chat_url).mock(
            side_effect=[
                httpx.Response(429, headers={"retry-after-ms": "20"}),
                httpx.Response(503, headers={"Retry-After": past}),
                httpx.Response(200, json=chat_body("ok")),
            ]
        )
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.text == "ok"
    assert _retry_sleeps(logs) == [0.02, 0.0]


async def test_retry_after_beyond_limit_gives_up_at_once(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(429, headers={"Retry-After": "3600"})
        with pytest.raises(LLMError) as info:
            await chat_client.chat(chat_request, chat_endpoint)
    assert info.value.kind == "rate_limited" and info.value.status == 429
    assert route.call_count == 1


async def test_500_then_success(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).mock(
            side_effect=[
                httpx.Response(500, text="Internal Server Error"),
                httpx.Response(502, json={"detail": "bad gateway"}),
                httpx.Response(200, json=chat_body("third time")),
            ]
        )
        result = await chat_client.chat(chat_request, chat_endpoint)
    assert result.text == "third time" and result.extra["attempts"] == 3
    assert route.call_count == 3
    metrics = chat_client.metrics()["ep"]
    assert metrics["retries"] == 2 and metrics["errors"] == {} and metrics["successes"] == 1
    assert metrics["breaker"] == "closed"


async def test_5xx_exhausts_retries(
    chat_request: ChatRequest, chat_url: str, chat_retry: RetryPolicy
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", max_retries=2)
    async with OpenAIChatClient(retry=chat_retry, breaker_failures=100) as client:
        with respx.mock:
            route = respx.post(chat_url).respond(503, json={"error": {"message": "overloaded"}})
            with pytest.raises(LLMError, match="overloaded") as info:
                await client.chat(chat_request, endpoint)
    assert info.value.kind == "http" and info.value.status == 503
    assert route.call_count == 3


async def test_backoff_never_sleeps_past_the_deadline(
    chat_client: OpenAIChatClient,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_url: str,
) -> None:
    with respx.mock:
        route = respx.post(chat_url).respond(429, headers={"Retry-After": "2"})
        deadline = time.monotonic() + 0.5
        with pytest.raises(LLMError) as info:
            await chat_client.chat(chat_request, chat_endpoint, deadline=deadline)
        returned = time.monotonic()
    assert info.value.kind == "deadline"
    assert info.value.status == 429
    assert "rate limiting" in str(info.value)  # the cause is kept
    assert returned < deadline  # gave up instead of sleeping 2 s
    assert route.call_count == 1


async def test_exponential_backoff_grows_with_jitter(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec, chat_url: str
) -> None:
    policy = RetryPolicy(initial_s=0.01, max_s=0.03, jitter_s=0.001)
    async with OpenAIChatClient(retry=policy, breaker_failures=100) as client:
        with respx.mock, capture_logs() as logs:
            respx.post(chat_url).respond(500)
            with pytest.raises(LLMError):
                await client.chat(chat_request, chat_endpoint)
    sleeps = _retry_sleeps(logs)
    assert len(sleeps) == 3
    for got, base in zip(sleeps, [0.01, 0.02, 0.03], strict=True):
        assert base <= got <= base + 0.0015
