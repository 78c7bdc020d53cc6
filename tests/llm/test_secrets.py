"""API keys never reach logs, exceptions, reprs or metrics."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from hieramas.llm.client import OpenAIChatClient, RetryPolicy
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError

SECRET = "sk-or-v1-THIS-IS-A-SECRET-0123456789"


async def test_secret_not_in_logs_errors_or_reprs(
    chat_request: ChatRequest, chat_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIERAMAS_TEST_KEY", SECRET)
    endpoint = EndpointSpec("keyed", "http://llm.test/v1", api_key_env="HIERAMAS_TEST_KEY")
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": 401}}
    client = OpenAIChatClient(
        retry=RetryPolicy(initial_s=0.001, max_s=0.001, jitter_s=0.0), breaker_failures=2
    )
    errors: list[LLMError] = []
    with respx.mock, capture_logs() as logs:
        route = respx.post(chat_url).mock(
            side_effect=[
                httpx.Response(500, json=echo),
                httpx.Response(401, json=echo),
                httpx.ConnectError(f"cannot connect with {SECRET}"),
                httpx.ConnectError(f"cannot connect with {SECRET}"),
                httpx.ConnectError(f"cannot connect with {SECRET}"),
            ]
        )
        for _ in range(3):
            with pytest.raises(LLMError) as info:
                await client.chat(chat_request, endpoint)
            errors.append(info.value)
        # the key was really sent, so the checks below are meaningful
        assert route.calls[0].request.headers["authorization"] == f"Bearer {SECRET}"
    texts = [json.dumps(event, default=repr) for event in logs]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [repr(client), json.dumps(client.metrics()), repr(client._states["keyed"])]
    assert len(logs) >= 3
    assert any("Incorrect API key" in t for t in texts)  # the messages themselves survive
    for text in texts:
        assert SECRET not in text
    await client.aclose()
