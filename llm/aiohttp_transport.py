"""An httpx transport that moves the bytes with aiohttp and reads plain bodies whole.

httpx's own transport (httpcore + anyio) costs several times the CPU of
aiohttp per call (``bench/llm_layer.py``), and a worker makes many calls from
one event loop.  :class:`BufferedAiohttpTransport` keeps httpx's request and
response model for the client and sends with an ``aiohttp.ClientSession``.
An OpenAI-compatible completion is one small JSON document, so it is read
with one ``ClientResponse.read()`` and returned as an ``httpx.Response`` whose
content is already loaded; only server-sent events (``text/event-stream``)
stay streamed.  aiohttp's exceptions become httpx's (:func:`httpx_errors`),
so callers keep catching ``httpx.HTTPError`` and can tell a refused
connection from a timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

__all__ = ["BufferedAiohttpTransport", "httpx_errors"]

_HTTP11 = {"http_version": b"HTTP/1.1"}
_CHUNK = 16 * 1024

# first match wins: timeouts before the connection errors they subclass
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.NetworkError),
    (aiohttp.ClientError, httpx.TransportError),
)


@contextmanager
def httpx_errors() -> Iterator[None]:
    """Re-raise aiohttp's client exceptions as the matching httpx exception."""
    try:
        yield
    except aiohttp.ClientError as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__) from exc
        raise  # pragma: no cover - _ERRORS ends with ClientError


class _EventStream(httpx.AsyncByteStream):
    """A server-sent-event body, chunk by chunk as aiohttp receives it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors():
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class BufferedAiohttpTransport(httpx.AsyncBaseTransport):
    """aiohttp under httpx: one keep-alive pool, whole bodies, streamed event streams."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limit = limits.max_connections or 0
        self._keepalive_s = limits.keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive_s)
        self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        with httpx_errors():
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=request.content or None,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
            if response.content_type == "text/event-stream":
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    stream=_EventStream(response),
                    request=request,
                    extensions=dict(_HTTP11),
                )
            try:
                body = await response.read()
            finally:
                response.release()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            content=body,
            request=request,
            extensions=dict(_HTTP11),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
