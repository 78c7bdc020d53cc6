"""Circuit breaker: the state machine (fake clock) and its use by the client (respx)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from hieramas.llm.breaker import CircuitBreaker
from hieramas.llm.client import OpenAIChatClient, RetryPolicy
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError

Body = Callable[..., dict[str, Any]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(3, 10.0, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in() == pytest.approx(10.0)
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert breaker.times_opened == 1


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.times_opened == 2
    assert breaker.retry_in() == pytest.approx(5.0)


def test_released_probe_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.release()  # cancelled probe: no verdict
    assert breaker.state == "half_open" and breaker.allow()


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, -1.0)


async def test_client_fails_fast_while_open_then_recovers(
    chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    endpoint = EndpointSpec("down", "http://llm.test/v1", max_retries=0)
    client = OpenAIChatClient(
        retry=RetryPolicy(initial_s=0.001, max_s=0.001, jitter_s=0.0),
        breaker_failures=2,
        breaker_reset_s=0.2,
    )
    async with client:
        with respx.mock:
            route = respx.post(chat_url).mock(side_effect=httpx.ConnectError("down"))
            for _ in range(2):
                with pytest.raises(LLMError) as info:
                    await client.chat(chat_request, endpoint)
                assert info.value.kind == "connection"
            assert client.metrics()["down"]["breaker"] == "open"
            with pytest.raises(LLMError) as info:
                await client.chat(chat_request, endpoint)
            assert info.value.kind == "circuit_open"
            assert route.call_count == 2  # the third call never reached the network

            await asyncio.sleep(0.25)
            assert client.metrics()["down"]["breaker"] == "half_open"
            route.mock(side_effect=None, return_value=httpx.Response(200, json=chat_body("up")))
            result = await client.chat(chat_request, endpoint)
        metrics = client.metrics()["down"]
    assert result.text == "up"
    assert metrics["breaker"] == "closed" and metrics["breaker_opened"] == 1
    assert metrics["errors"] == {"connection": 2, "circuit_open": 1}


async def test_breaker_opening_mid_call_keeps_the_cause(
    chat_request: ChatRequest, chat_url: str
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", max_retries=5)
    client = OpenAIChatClient(
        retry=RetryPolicy(initial_s=0.001, max_s=0.001, jitter_s=0.0), breaker_failures=2
    )
    async with client:
        with respx.mock:
            route = respx.post(chat_url).respond(500, text="boom")
            with pytest.raises(LLMError) as info:
                await client.chat(chat_request, endpoint)
    assert info.value.kind == "circuit_open"
    assert "boom" in str(info.value)
    assert route.call_count == 2


async def test_4xx_and_429_do_not_open_the_breaker(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec, chat_url: str
) -> None:
    client = OpenAIChatClient(
        retry=RetryPolicy(initial_s=0.001, max_s=0.001, jitter_s=0.0), breaker_failures=1
    )
    async with client:
        with respx.mock:
            respx.post(chat_url).mock(
                side_effect=[httpx.Response(400), httpx.Response(429)] * 2
                + [httpx.Response(429)] * 10
            )
            for _ in range(3):
                with pytest.raises(LLMError) as info:
                    await client.chat(chat_request, chat_endpoint)
                assert info.value.kind in {"http", "rate_limited"}
        assert client.metrics()["ep"]["breaker"] == "closed"
