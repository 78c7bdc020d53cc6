"""Every transport a worker may use, against the real loopback server: the same contract.

Each test runs over the lean HTTP/1.1 transport and the aiohttp one, built by the
factories ``hieramas.llm.transports`` gives workers.  What only one of them does is
tested in ``test_h1_transport.py`` and ``test_aiohttp_transport.py``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.h1_transport import H1Transport
from hieramas.llm.loopback import LoopbackLLM
from hieramas.llm.transports import (
    ENV,
    TransportFactory,
    aiohttp_transport,
    auto_transport,
    default_transport_factory,
    h1_transport,
)
from hieramas.llm.types import ChatRequest, EndpointSpec, ModelSpec
from support import chat_post


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as srv:
        yield srv


@pytest.fixture(params=[h1_transport, aiohttp_transport], ids=["h1", "aiohttp"])
def factory(request: pytest.FixtureRequest) -> TransportFactory:
    chosen: TransportFactory = request.param
    return chosen


def _open(factory: TransportFactory, base_url: str) -> httpx.AsyncBaseTransport:
    return factory(EndpointSpec("loop", base_url, max_concurrency=2))


async def test_plain_body_and_headers_reach_the_other_side(
    server: LoopbackLLM, factory: TransportFactory
) -> None:
    transport = _open(factory, server.base_url)
    try:
        response = await transport.handle_async_request(chat_post(server.base_url))
        document = json.loads(await response.aread())
        await response.aclose()
    finally:
        await transport.aclose()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert document["choices"][0]["message"]["content"] == "a b c"
    sent = server.requests[-1]
    assert sent.headers["authorization"] == "Bearer sk-t"
    assert sent.headers["host"] == server.base_url.split("/")[2]


async def test_event_stream_is_delivered_as_it_arrives(
    server: LoopbackLLM, factory: TransportFactory
) -> None:
    transport = _open(factory, server.base_url)
    try:
        started = time.monotonic()
        response = await transport.handle_async_request(
            chat_post(server.base_url, "ttft-400", stream=True)
        )
        chunks = response.aiter_raw()
        first = await anext(chunks)
        first_at = time.monotonic() - started
        rest = b"".join([chunk async for chunk in chunks])
        done_at = time.monotonic() - started
        await response.aclose()
        again = await transport.handle_async_request(chat_post(server.base_url))  # pooled again
        await again.aclose()
    finally:
        await transport.aclose()
    assert b'"role"' in first  # the role event comes before the 400 ms wait
    assert first_at < 0.3 <= 0.4 <= done_at
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert again.status_code == 200


async def test_client_streams_through_it_with_true_first_token_time(
    server: LoopbackLLM, factory: TransportFactory
) -> None:
    endpoint = EndpointSpec("loop", server.base_url)
    model = ModelSpec("pool", "ttft-150", "loop", price_in_per_m=1.0, price_out_per_m=1.0)
    request = ChatRequest(model, [{"role": "user", "content": "tell me three words"}])
    async with OpenAIChatClient(stream=True, transport_factory=factory) as client:
        result = await client.chat(request, endpoint)
    assert result.text == "ok: tell me three words"
    assert result.ttft_s is not None and 0.15 <= result.ttft_s <= result.latency_s


async def test_sequential_calls_reuse_one_pooled_connection(
    server: LoopbackLLM, factory: TransportFactory
) -> None:
    transport = _open(factory, server.base_url)
    before = len(server.requests)
    try:
        for _ in range(4):
            response = await transport.handle_async_request(chat_post(server.base_url, "keep"))
            assert response.status_code == 200
            await response.aclose()
    finally:
        await transport.aclose()
    assert len({r.client_port for r in server.requests[before:]}) == 1


async def test_refused_connection_is_a_connect_error(factory: TransportFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{dead_port}/v1"
    transport = _open(factory, dead)
    try:
        with pytest.raises(httpx.ConnectError):  # not a timeout: callers report "connection"
            await transport.handle_async_request(chat_post(dead))
    finally:
        await transport.aclose()


def test_the_default_picks_h1_for_http_and_aiohttp_for_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert default_transport_factory() is auto_transport
    assert isinstance(auto_transport(EndpointSpec("l", "http://127.0.0.1:1/v1")), H1Transport)
    hosted = auto_transport(EndpointSpec("h", "https://openrouter.ai/api/v1"))
    assert type(hosted) is type(aiohttp_transport(EndpointSpec("h", "https://x/v1")))
    monkeypatch.setenv(ENV, "h1")
    assert default_transport_factory() is h1_transport
    monkeypatch.setenv(ENV, "httpx")
    assert default_transport_factory() is None
    monkeypatch.setenv(ENV, "curl")
    with pytest.raises(ValueError, match="HIERAMAS_HTTP_TRANSPORT must be one of"):
        default_transport_factory()
