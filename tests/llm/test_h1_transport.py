"""What only H1Transport does, against real servers on loopback: the loopback LLM server
on uvloop, and a raw asyncio server that answers each connection as a test scripts it
(chunked and close-delimited bodies, dropped and stale connections, garbage, silence).
The behaviour every transport shares is tested in ``test_transports.py``."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest

from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.h1_transport import H1Transport
from hieramas.llm.loopback import LoopbackLLM
from hieramas.llm.transports import h1_transport
from hieramas.llm.types import ChatRequest, EndpointSpec, ModelSpec
from support import chat_post

LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as srv:
        yield srv


# -- against the loopback LLM server --------------------------------------------------


def test_it_runs_on_uvloop_as_workers_do(server: LoopbackLLM) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def calls() -> list[int]:
        transport = H1Transport(LIMITS, TIMEOUT)
        try:
            answers = await asyncio.gather(
                *(transport.handle_async_request(chat_post(server.base_url)) for _ in range(5))
            )
            return [answer.status_code for answer in answers]
        finally:
            await transport.aclose()

    assert uvloop.run(calls()) == [200] * 5


# -- against a scripted raw server ----------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class RawServer:
    """Each connection gets ``script(reader, writer, connection_number)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer, self.connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        data = await _read_request(reader)
        self.requests.append(data)
        return data


def _ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json"]
    head += [b"Content-Length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    t = H1Transport(LIMITS, httpx.Timeout(2.0, read=0.3, pool=0.3))
    yield t
    await t.aclose()


async def _get(transport: H1Transport, url: str) -> httpx.Response:
    response = await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))
    await response.aread()
    return response


async def test_chunked_and_close_delimited_bodies(transport: H1Transport) -> None:
    server: RawServer

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await server.request(r)
        if n == 1:  # chunked, in two writes
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(b"6\r\n world\r\n0\r\n\r\n")
            await w.drain()
            await server.request(r)  # kept alive: the second request comes here
        # no length, no chunks: the body ends when the server closes
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await w.drain()

    async with RawServer(script) as server:
        chunked = await _get(transport, server.url)
        delimited = await _get(transport, server.url)
        after = await _get(transport, server.url)  # the closed one is not reused
    assert chunked.content == b"hello world"
    assert delimited.content == b"until the end"
    assert after.content == b"until the end"
    assert server.connections == 2


async def test_an_interim_response_is_skipped(transport: H1Transport) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b'{"final": true}'))
        await w.drain()
        await _read_request(r)

    async with RawServer(script) as server:
        answer = await _get(transport, server.url)
    assert answer.status_code == 200 and answer.json() == {"final": True}


async def test_the_client_decodes_a_compressed_completion() -> None:
    completion = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "zipped"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    body = gzip.compress(json.dumps(completion).encode())

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(_ok(body, b"Content-Encoding: gzip"))
        await w.drain()

    model = ModelSpec("pool", "m", "raw", price_in_per_m=1.0, price_out_per_m=1.0)
    request = ChatRequest(model, [{"role": "user", "content": "hi"}])
    async with (
        RawServer(script) as server,
        OpenAIChatClient(transport_factory=h1_transport) as client,
    ):
        result = await client.chat(request, EndpointSpec("raw", server.url, max_retries=0))
    assert result.text == "zipped" and result.completion_tokens == 1


async def test_a_stale_pooled_connection_is_replaced_once(transport: H1Transport) -> None:
    server: RawServer

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await server.request(r)
        w.write(_ok(b'{"n": %d}' % n))
        await w.drain()
        if n == 1:
            await r.readuntil(b"\r\n\r\n")  # takes the next request, then hangs up unanswered
            return
        await server.request(r)
        w.write(_ok(b'{"n": %d}' % n))
        await w.drain()

    async with RawServer(script) as server:
        first = await _get(transport, server.url)
        second = await _get(transport, server.url)  # written to the stale one, then replayed
    assert (first.json(), second.json()) == ({"n": 1}, {"n": 2})
    assert server.connections == 2


async def test_a_new_connection_that_drops_without_answering_is_an_error(
    transport: H1Transport,
) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)

    async with RawServer(script) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="without a response"):
            await _get(transport, server.url)
    assert server.connections == 1  # a fresh connection is never replayed


async def test_garbage_mid_body_drops_and_silence_are_httpx_errors(
    transport: H1Transport,
) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        if n == 1:
            w.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif n == 2:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        elif n == 3:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            await w.drain()
            await asyncio.sleep(1.0)  # then silence beyond the 0.3 s read timeout
        await w.drain()

    async with RawServer(script) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await _get(transport, server.url)
        with pytest.raises(httpx.ReadError, match="mid-body"):
            await _get(transport, server.url)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await _get(transport, server.url)
        assert 0.25 < time.monotonic() - started < 0.9


async def test_connections_are_capped_and_the_wait_for_one_is_bounded() -> None:
    transport = H1Transport(httpx.Limits(max_connections=1), httpx.Timeout(2.0, pool=0.2))
    server: RawServer

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await server.request(r)
            await asyncio.sleep(0.5 if b"slow" in request else 0.01)
            w.write(_ok(b"{}"))
            await w.drain()

    try:
        async with RawServer(script) as server:
            answers = await asyncio.gather(*(_get(transport, server.url) for _ in range(4)))
            assert [a.status_code for a in answers] == [200] * 4
            assert server.connections == 1
            slow = asyncio.ensure_future(_get(transport, server.url + "/slow"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await _get(transport, server.url)
            assert (await slow).status_code == 200
    finally:
        await transport.aclose()


async def test_cancelling_a_call_closes_its_connection(transport: H1Transport) -> None:
    server: RawServer

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await server.request(r)
        if n == 1:
            await asyncio.sleep(5)
        w.write(_ok(b"{}"))
        await w.drain()

    async with RawServer(script) as server:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await _get(transport, server.url)
        answer = await _get(transport, server.url)  # a new connection, not the abandoned one
    assert answer.status_code == 200
    assert server.connections == 2


async def test_unsupported_scheme_and_header_injection_are_refused(
    transport: H1Transport,
) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await _get(transport, "https://example.invalid/v1")
    server: RawServer

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await server.request(r)
        w.write(_ok(b"{}"))
        await w.drain()

    async with RawServer(script) as server:
        for evil in ("a\r\nInjected: 1", "a\nInjected: 1", "a\rb"):  # httpx lets these through
            headers = {"X-Fine": "yes", "X-Evil": evil}
            request = httpx.Request("POST", server.url, content=b"{}", headers=headers)
            with pytest.raises(httpx.LocalProtocolError, match="header b'X-Evil' contains a line"):
                await transport.handle_async_request(request)
        assert server.requests == []  # nothing was sent
        assert (await _get(transport, server.url)).status_code == 200  # and it still works
