"""What only BufferedAiohttpTransport does: plain bodies come back loaded, aiohttp errors become
httpx ones.  The behaviour every transport shares is tested in ``test_transports.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from hieramas.llm.aiohttp_transport import BufferedAiohttpTransport, httpx_errors
from hieramas.llm.loopback import LoopbackLLM
from support import chat_post

LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as srv:
        yield srv


async def test_a_plain_body_arrives_already_loaded(server: LoopbackLLM) -> None:
    """Status, headers and body over this transport: ``test_transports.py``."""
    transport = BufferedAiohttpTransport(LIMITS)
    try:
        response = await transport.handle_async_request(chat_post(server.base_url))
        # a streamed httpx.Response raises ResponseNotRead here; a buffered one has its content
        document = json.loads(response.content)
        await response.aclose()
    finally:
        await transport.aclose()
    assert document["choices"][0]["message"]["content"] == "a b c"


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
