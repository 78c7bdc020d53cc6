"""Shared fixtures for the LLM client tests (names prefixed ``chat_`` to stay out of the way)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hieramas.llm.client import OpenAIChatClient, RetryPolicy
from hieramas.llm.types import ChatRequest, EndpointSpec, ModelSpec

BASE = "http://llm.test/v1"
FAST_RETRY = RetryPolicy(initial_s=0.001, max_s=0.005, jitter_s=0.001, max_retry_after_s=5.0)

BodyFactory = Callable[..., dict[str, Any]]


def _completion_body(
    text: str = "hello", usage: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "served/model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage
    return body


@pytest.fixture
def chat_body() -> BodyFactory:
    """Factory of minimal OpenAI chat-completions response bodies."""
    return _completion_body


@pytest.fixture
def chat_url() -> str:
    return f"{BASE}/chat/completions"


@pytest.fixture
def chat_model() -> ModelSpec:
    return ModelSpec("m1", "org/model-1", "ep", price_in_per_m=1.0, price_out_per_m=2.0)


@pytest.fixture
def chat_endpoint() -> EndpointSpec:
    return EndpointSpec("ep", BASE, timeout_s=5.0, max_retries=3)


@pytest.fixture
def chat_request(chat_model: ModelSpec) -> ChatRequest:
    return ChatRequest(chat_model, [{"role": "user", "content": "Say hello."}])


@pytest.fixture
def chat_retry() -> RetryPolicy:
    return FAST_RETRY


@pytest.fixture
async def chat_client(chat_endpoint: EndpointSpec) -> AsyncIterator[OpenAIChatClient]:
    client = OpenAIChatClient({"ep": chat_endpoint}, retry=FAST_RETRY, breaker_failures=3)
    yield client
    await client.aclose()
