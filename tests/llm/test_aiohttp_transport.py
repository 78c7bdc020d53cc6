"""BufferedAiohttpTransport against the real loopback server: whole bodies, live event streams."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from hieramas.llm.aiohttp_transport import BufferedAiohttpTransport, httpx_errors
from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.loopback import LoopbackLLM
from hieramas.llm.transports import aiohttp_transport
from hieramas.llm.types import ChatRequest, EndpointSpec, ModelSpec

LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as srv:
        yield srv


def _post(base_url: str, model: str, *, stream: bool = False) -> httpx.Request:
    body = {"model": model, "messages": [{"role": "user", "content": "one two three"}]}
    if stream:
        body["stream"] = True
    return httpx.Request(
        "POST",
        f"{base_url}/chat/completions",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-t"},
        content=json.dumps(body).encode(),
    )


async def test_plain_body_arrives_loaded_and_headers_reach_the_server(
    server: LoopbackLLM,
) -> None:
    transport = BufferedAiohttpTransport(LIMITS)
    try:
        response = await transport.handle_async_request(_post(server.base_url, "echo"))
        # a streamed httpx.Response raises ResponseNotRead here; a buffered one has its content
        document = json.loads(response.content)
        await response.aclose()
    finally:
        await transport.aclose()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert document["choices"][0]["message"]["content"] == "one two three"
    assert server.requests[-1].headers["authorization"] == "Bearer sk-t"


async def test_event_stream_is_delivered_as_it_arrives(server: LoopbackLLM) -> None:
    transport = BufferedAiohttpTransport(LIMITS)
    try:
        started = time.monotonic()
        request = _post(server.base_url, "ttft-400", stream=True)
        response = await transport.handle_async_request(request)
        chunks = response.aiter_raw()
        first = await anext(chunks)
        first_at = time.monotonic() - started
        rest = b"".join([chunk async for chunk in chunks])
        done_at = time.monotonic() - started
        await response.aclose()
    finally:
        await transport.aclose()
    assert b'"role"' in first  # the role event comes before the 400 ms wait
    assert first_at < 0.3 <= 0.4 <= done_at
    assert rest.rstrip().endswith(b"data: [DONE]")


async def test_client_streams_through_it_with_true_first_token_time(server: LoopbackLLM) -> None:
    endpoint = EndpointSpec("loop", server.base_url)
    model = ModelSpec("pool", "ttft-150", "loop", price_in_per_m=1.0, price_out_per_m=1.0)
    request = ChatRequest(model, [{"role": "user", "content": "tell me three words"}])
    async with OpenAIChatClient(stream=True, transport_factory=aiohttp_transport) as client:
        result = await client.chat(request, endpoint)
    assert result.text == "ok: tell me three words"
    assert result.ttft_s is not None and 0.15 <= result.ttft_s <= result.latency_s


async def test_refused_connection_maps_to_httpx_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    transport = BufferedAiohttpTransport(LIMITS)
    try:
        with pytest.raises(httpx.ConnectError):
            await transport.handle_async_request(_post(f"http://127.0.0.1:{dead_port}/v1", "x"))
    finally:
        await transport.aclose()


async def test_sequential_calls_reuse_one_pooled_connection(server: LoopbackLLM) -> None:
    transport = BufferedAiohttpTransport(LIMITS)
    before = len(server.requests)
    try:
        for _ in range(4):
            response = await transport.handle_async_request(_post(server.base_url, "keep"))
            assert response.status_code == 200
            await response.aclose()
    finally:
        await transport.aclose()
    assert len({r.client_port for r in server.requests[before:]}) == 1


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut short"), httpx.ReadError),
        (aiohttp.ClientOSError(104, "reset"), httpx.NetworkError),
        (aiohttp.InvalidURL("nope://x"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("other"), httpx.TransportError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_aiohttp_errors_become_the_matching_httpx_error(
    raised: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as info, httpx_errors():
        raise raised
    assert type(info.value) is expected
    assert info.value.__cause__ is raised
