"""Per-endpoint concurrency limit, rate limit and cancellation (respx)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError

Body = Callable[..., dict[str, Any]]


async def test_concurrency_is_capped_per_endpoint(
    chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", max_concurrency=3)
    other = EndpointSpec("other", "http://other.test/v1", max_concurrency=3)
    in_flight = 0
    peak: dict[str, int] = {"llm.test": 0, "other.test": 0}
    both = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, both
        in_flight += 1
        host = request.url.host
        current[host] += 1
        peak[host] = max(peak[host], current[host])
        both = max(both, in_flight)
        await asyncio.sleep(0.01)
        current[host] -= 1
        in_flight -= 1
        return httpx.Response(200, json=chat_body())

    current = {"llm.test": 0, "other.test": 0}
    async with OpenAIChatClient() as client:
        with respx.mock:
            respx.post(chat_url).mock(side_effect=slow)
            respx.post("http://other.test/v1/chat/completions").mock(side_effect=slow)
            await asyncio.gather(
                *(client.chat(chat_request, endpoint) for _ in range(12)),
                *(client.chat(chat_request, other) for _ in range(12)),
            )
        assert client.metrics()["ep"]["in_flight"] == 0
    assert peak == {"llm.test": 3, "other.test": 3}
    assert both == 6  # the limits are independent


async def test_queued_call_respects_deadline(
    chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", max_concurrency=1)
    release = asyncio.Event()

    async def blocked(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=chat_body())

    async with OpenAIChatClient() as client:
        with respx.mock:
            route = respx.post(chat_url).mock(side_effect=blocked)
            first = asyncio.create_task(client.chat(chat_request, endpoint))
            await asyncio.sleep(0.05)
            with pytest.raises(LLMError, match="queued") as info:
                await client.chat(chat_request, endpoint, deadline=time.monotonic() + 0.05)
            release.set()
            assert (await first).text == "hello"
    assert info.value.kind == "deadline"
    assert route.call_count == 1


async def test_rate_limit_blocks_until_deadline(
    chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", rate_limit_per_s=0.5)
    async with OpenAIChatClient() as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, json=chat_body())
            await client.chat(chat_request, endpoint)  # uses the one token of the next 2 s
            with pytest.raises(LLMError, match="rate-limited") as info:
                await client.chat(chat_request, endpoint, deadline=time.monotonic() + 0.05)
    assert info.value.kind == "deadline"
    assert route.call_count == 1


async def test_invalid_endpoint_limits(chat_request: ChatRequest) -> None:
    async with OpenAIChatClient() as client:
        with pytest.raises(ValueError, match="max_concurrency"):
            await client.chat(chat_request, EndpointSpec("a", "http://x/v1", max_concurrency=0))
        with pytest.raises(ValueError, match="rate_limit_per_s"):
            await client.chat(chat_request, EndpointSpec("b", "http://x/v1", rate_limit_per_s=0))


async def test_reconfigured_endpoint_gets_a_new_pool_and_keeps_counters(
    chat_request: ChatRequest, chat_body: Body
) -> None:
    old = EndpointSpec("ep", "http://old.test/v1")
    new = EndpointSpec("ep", "http://new.test/v1", timeout_s=9.0)
    async with OpenAIChatClient() as client:
        with respx.mock:
            old_route = respx.post("http://old.test/v1/chat/completions").respond(
                200, json=chat_body("old")
            )
            new_route = respx.post("http://new.test/v1/chat/completions").respond(
                200, json=chat_body("new")
            )
            assert (await client.chat(chat_request, old)).text == "old"
            same = EndpointSpec("ep", "http://old.test/v1")  # equal, not identical: no change
            assert (await client.chat(chat_request, same)).text == "old"
            assert (await client.chat(chat_request, new)).text == "new"
        assert client.endpoints["ep"] == new
        assert client.metrics()["ep"]["calls"] == 3
    assert old_route.call_count == 2 and new_route.call_count == 1


async def test_versions_alternating_between_two_settings_reuse_two_pools(
    chat_request: ChatRequest, chat_body: Body
) -> None:
    """Queries of an old and a new config version interleave while the old ones finish."""
    created: list[str] = []
    closed: list[str] = []

    class Counted(httpx.MockTransport):
        def __init__(self, host: str) -> None:
            super().__init__(lambda request: httpx.Response(200, json=chat_body(host)))
            self.host = host

        async def aclose(self) -> None:
            closed.append(self.host)

    def factory(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
        host = httpx.URL(endpoint.base_url).host
        created.append(host)
        return Counted(host)

    old = EndpointSpec("ep", "http://old.test/v1", max_concurrency=2)
    new = EndpointSpec("ep", "http://new.test/v1", max_concurrency=2)
    async with OpenAIChatClient(transport_factory=factory) as client:
        texts = [(await client.chat(chat_request, spec)).text for spec in [old, new] * 5]
        assert client.metrics()["ep"]["calls"] == 10
        await client.chat(chat_request, old)  # by name, the settings used last are reported
        assert client.endpoints["ep"] == old
        assert client.breaker("ep") is client._by_spec[old].breaker
    assert texts == ["old.test", "new.test"] * 5
    assert created == ["old.test", "new.test"]  # one pool per settings, not one per switch
    assert sorted(closed) == ["new.test", "old.test"]  # both closed with the client


async def test_cancellation_frees_slot_and_probe(
    chat_request: ChatRequest, chat_body: Body, chat_url: str
) -> None:
    endpoint = EndpointSpec("ep", "http://llm.test/v1", max_concurrency=1)

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async with OpenAIChatClient() as client:
        with respx.mock:
            route = respx.post(chat_url).mock(side_effect=hang)
            task = asyncio.create_task(client.chat(chat_request, endpoint))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            route.mock(side_effect=None, return_value=httpx.Response(200, json=chat_body("ok")))
            result = await client.chat(chat_request, endpoint, deadline=time.monotonic() + 1)
        metrics = client.metrics()["ep"]
    assert result.text == "ok"
    assert metrics["in_flight"] == 0 and metrics["breaker"] == "closed"
