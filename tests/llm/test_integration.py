"""Real HTTP path: the client against a real loopback server, with the official openai client
as the reference for the request's shape."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import openai
import pytest

from hieramas.llm.client import OpenAIChatClient, RetryPolicy
from hieramas.llm.loopback import LoopbackLLM
from hieramas.llm.transports import (
    TransportFactory,
    aiohttp_transport,
    h1_transport,
    httpx_transport,
)
from hieramas.llm.types import ChatRequest, EndpointSpec, LLMError, ModelSpec

FAST = RetryPolicy(initial_s=0.001, max_s=0.005, jitter_s=0.001)


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    """A fresh server per test: scripted models such as ``flaky-2`` count requests per server."""
    with LoopbackLLM() as srv:
        yield srv


@pytest.fixture(
    params=[httpx_transport, aiohttp_transport, h1_transport], ids=["httpx", "aiohttp", "h1"]
)
def transport(request: pytest.FixtureRequest) -> TransportFactory:
    """Every real-HTTP test runs over httpx's own transport, aiohttp and the lean HTTP/1.1 one."""
    factory: TransportFactory = request.param
    return factory


def _request(model_id: str, **kw: object) -> ChatRequest:
    model = ModelSpec("pool-name", model_id, "loop", price_in_per_m=0.5, price_out_per_m=1.5)
    return ChatRequest(
        model,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        **kw,  # type: ignore[arg-type]
    )


async def test_request_shape_matches_official_openai_client(
    server: LoopbackLLM, transport: TransportFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPBACK_KEY", "sk-loop-key")
    endpoint = EndpointSpec("loop", server.base_url, api_key_env="LOOPBACK_KEY")
    request = _request("shape-model", temperature=0.3, max_tokens=17, seed=4)
    async with OpenAIChatClient(transport_factory=transport) as client:
        ours = await client.chat(request, endpoint)
    mine = server.requests[-1]

    reference = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-loop-key", max_retries=0)
    theirs_result = await reference.chat.completions.create(
        model="shape-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        temperature=0.3,
        max_tokens=17,
        seed=4,
    )
    await reference.close()
    theirs = server.requests[-1]

    assert mine.body == theirs.body
    assert mine.headers["authorization"] == theirs.headers["authorization"]
    assert mine.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert mine.headers["host"] == theirs.headers["host"]
    assert "transfer-encoding" not in mine.headers  # a sized body, as the reference sends
    assert ours.text == theirs_result.choices[0].message.content == "ok: 2+2?"
    assert theirs_result.usage is not None
    assert ours.prompt_tokens == theirs_result.usage.prompt_tokens == 7
    assert ours.completion_tokens == theirs_result.usage.completion_tokens == 3
    assert ours.cost_usd == pytest.approx((7 * 0.5 + 3 * 1.5) / 1e6)


async def test_real_http_quirks_retries_and_keepalive(
    server: LoopbackLLM, transport: TransportFactory
) -> None:
    endpoint = EndpointSpec("loop", server.base_url, max_retries=3)
    async with OpenAIChatClient(retry=FAST, transport_factory=transport) as client:
        no_usage = await client.chat(_request("no-usage"), endpoint)
        null_usage = await client.chat(_request("null-usage"), endpoint)
        flaky = await client.chat(_request("flaky-2"), endpoint)
        with pytest.raises(LLMError) as info:
            await client.chat(_request("status-404"), endpoint)
        ports_before = len(server.requests)
        for _ in range(5):
            await client.chat(_request("keepalive"), endpoint)
        metrics = client.metrics()["loop"]
    assert no_usage.usage_estimated and null_usage.usage_estimated
    assert no_usage.prompt_tokens > 0 and no_usage.completion_tokens > 0
    assert flaky.extra["attempts"] == 3 and flaky.text == "ok: 2+2?"
    assert info.value.kind == "http" and info.value.status == 404
    ports = {r.client_port for r in server.requests[ports_before:]}
    assert len(ports) == 1  # one pooled keep-alive connection for sequential calls
    assert metrics["retries"] == 2 and metrics["errors"] == {"http": 1}


async def test_concurrent_calls_over_real_http(
    server: LoopbackLLM, transport: TransportFactory
) -> None:
    endpoint = EndpointSpec("loop", server.base_url, max_concurrency=4)
    async with OpenAIChatClient(transport_factory=transport) as client:
        results = await asyncio.gather(
            *(client.chat(_request(f"c{i}"), endpoint) for i in range(40))
        )
        assert client.metrics()["loop"]["successes"] == 40
    assert sorted(r.extra["served_model"] for r in results) == sorted(f"c{i}" for i in range(40))


async def test_real_timeout_and_refused_connection(
    server: LoopbackLLM, transport: TransportFactory
) -> None:
    slow = EndpointSpec("loop", server.base_url, timeout_s=0.05, max_retries=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # closed when the block ends: nobody listens
    dead = EndpointSpec("dead", f"http://127.0.0.1:{dead_port}/v1", max_retries=1)
    async with OpenAIChatClient(retry=FAST, transport_factory=transport) as client:
        with pytest.raises(LLMError) as slow_info:
            await client.chat(_request("slow-300"), slow)
        with pytest.raises(LLMError) as dead_info:
            await client.chat(_request("x"), dead)
    assert slow_info.value.kind == "timeout"
    assert dead_info.value.kind == "connection"
