"""A lean HTTP/1.1 transport under httpx for plain-``http://`` model servers.

A worker makes every LLM call from the one event loop that also serves NATS,
so the CPU an HTTP call costs on that loop comes straight out of
orchestration.  For a small JSON completion, aiohttp spends about three times
the loop CPU that the exchange itself needs (``bench/llm_layer.py``, "HTTP
paths").  :class:`H1Transport` keeps httpx's request and response model and
does only what an OpenAI-compatible call needs: keep-alive connections per
origin (an :class:`asyncio.Protocol` each), the request written in one piece,
and the response parsed by ``httptools`` (llhttp, the parser uvicorn uses),
content-length, chunked and close-delimited bodies alike.  A plain completion
is received whole before the response is returned (its stream holds the
bytes); a ``text/event-stream`` body is streamed chunk by chunk.

It serves ``http://`` only: ``https://`` endpoints (hosted providers, where the
network dwarfs this cost) go to the aiohttp transport
(:func:`hieramas.llm.transports.default_transport_factory`).

Timeouts follow httpx's: ``connect`` bounds opening a connection, ``read`` the
silence between response bytes, ``pool`` the wait for a free connection.  A
pooled connection the server has closed meanwhile is replaced once, when no
byte of the response arrived (the usual keep-alive race); every other failure
is an httpx exception, so callers keep catching ``httpx.HTTPError``.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

__all__ = ["H1Transport"]

_HTTP11 = {"http_version": b"HTTP/1.1"}
_EVENT_STREAM = b"text/event-stream"
_NO_BODY_STATUS = frozenset({204, 304})
_COALESCE_BELOW = 64 * 1024


class _Exchange:
    """One request's response as it arrives: head, body chunks, end."""

    __slots__ = ("chunks", "done", "head", "headers", "received", "status", "until_close")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.chunks: collections.deque[bytes] = collections.deque()
        self.received = False  # any response byte at all
        self.until_close = False  # the body ends when the server closes

    def fail(self, exc: Exception) -> None:
        for future in (self.head, self.done):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the caller may be waiting on the other one


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._exchange: _Exchange | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self._body_waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # nothing asked: a server that talks out of turn
            self.close()
            return
        exchange.received = True
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self._exchange
        if exchange is None:
            return
        if exchange.until_close and exc is None and exchange.head.done():
            self._complete()  # a close-delimited body ends here
            return
        reason = f": {exc}" if exc is not None else ""
        if exchange.head.done():
            self._fail(httpx.ReadError(f"server closed the connection mid-body{reason}"))
        else:
            self._fail(httpx.RemoteProtocolError(f"server disconnected without a response{reason}"))

    # -- httptools callbacks ---------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._exchange is not None
        self._exchange.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        exchange.status = self._parser.get_status_code()
        if exchange.status < 200:
            return  # interim: on_message_complete drops it
        if exchange.status not in _NO_BODY_STATUS:
            names = {name.lower() for name, _ in exchange.headers}
            exchange.until_close = b"content-length" not in names and (
                b"transfer-encoding" not in names
            )
        exchange.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self._exchange is not None
        self._exchange.chunks.append(body)
        self._wake_reader()

    def on_message_complete(self) -> None:
        exchange = self._exchange
        if exchange is not None and exchange.status < 200:
            exchange.headers.clear()  # an interim response ends: wait for the final one
            return
        self.reusable = self._parser.should_keep_alive()
        self._complete()

    # -- exchanges -------------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> _Exchange:
        """Write one request; its :class:`_Exchange` fills as the response arrives."""
        assert self._transport is not None
        exchange = _Exchange(self._loop)
        self._exchange = exchange
        self.reusable = False
        if len(body) < _COALESCE_BELOW:
            self._transport.write(head + body)  # one segment for the usual small request
        else:
            self._transport.write(head)
            self._transport.write(body)
        if self._read_timeout is not None:
            self._last_data = self._loop.time()
            self._timer = self._loop.call_later(self._read_timeout, self._check_silence)
        return exchange

    async def next_chunk(self, exchange: _Exchange) -> bytes | None:
        """The next body chunk of a streamed response, ``None`` at its end."""
        while not exchange.chunks:
            if exchange.done.done():
                exchange.done.result()  # raises if the body failed
                return None
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        return exchange.chunks.popleft()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _check_silence(self) -> None:
        silent = self._loop.time() - self._last_data
        assert self._read_timeout is not None
        if silent < self._read_timeout:
            self._timer = self._loop.call_later(self._read_timeout - silent, self._check_silence)
            return
        self._timer = None
        self._fail(httpx.ReadTimeout(f"no response bytes for {self._read_timeout:g}s"))

    def _complete(self) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        self._stop_timer()
        self._exchange = None
        if not exchange.done.done():
            exchange.done.set_result(None)
        self._wake_reader()

    def _fail(self, exc: Exception) -> None:
        exchange = self._exchange
        self._stop_timer()
        self._exchange = None
        self.reusable = False
        self.close()
        if exchange is not None:
            exchange.fail(exc)
        self._wake_reader()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake_reader(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Pool:
    """Keep-alive connections to one origin, at most ``limit`` open at once."""

    def __init__(self, host: str, port: int, limits: httpx.Limits, timeout: httpx.Timeout) -> None:
        self.host, self.port = host, port
        self.limit = limits.max_connections or 1 << 30
        self.keepalive_s = limits.keepalive_expiry
        self.timeout = timeout
        self.idle: collections.deque[_Connection] = collections.deque()
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> tuple[_Connection, bool]:
        """A connection and whether it was pooled (reused) rather than new."""
        while self.idle:
            conn = self.idle.pop()
            if conn.closed or (
                self.keepalive_s is not None
                and time.monotonic() - conn.idle_since > self.keepalive_s
            ):
                self._discard(conn)
                continue
            return conn, True
        if self.open >= self.limit:
            await self._wait_for_room()
            return await self.acquire()
        self.open += 1
        try:
            return await self._connect(), False
        except BaseException:
            self.open -= 1
            self._wake()
            raise

    def release(self, conn: _Connection) -> None:
        """Back to the pool if reusable, else closed."""
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            self._discard(conn)
        self._wake()

    async def aclose(self) -> None:
        while self.idle:
            self._discard(self.idle.pop())

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout.connect):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self.timeout.read), self.host, self.port
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"connecting to {self.host}:{self.port} took over {self.timeout.connect:g}s"
            ) from exc
        except OSError as exc:
            raise httpx.ConnectError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        return conn

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout.pool):
                await waiter
        except TimeoutError as exc:
            raise httpx.PoolTimeout(
                f"no free connection to {self.host}:{self.port} within {self.timeout.pool:g}s"
            ) from exc
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self.open -= 1

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Body(httpx.AsyncByteStream):
    """A streamed response body; closing it early closes its connection."""

    def __init__(self, pool: _Pool, conn: _Connection, exchange: _Exchange) -> None:
        self._pool, self._conn, self._exchange = pool, conn, exchange
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk(self._exchange)) is not None:
            yield chunk
        self._release()

    async def aclose(self) -> None:
        if not self._exchange.done.done():
            self._conn.reusable = False
            self._conn.close()
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)


class H1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio protocols for ``http://`` URLs: pooled, buffered or streamed."""

    def __init__(self, limits: httpx.Limits, timeout: httpx.Timeout) -> None:
        self._limits = limits
        self._timeout = timeout
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"H1Transport serves http:// only, not {url.scheme!r}")
        key = (url.host, url.port or 80)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(url.host, key[1], self._limits, self._timeout)
        head, body = _serialise(request, await request.aread())
        for attempt in (1, 2):
            conn, reused = await pool.acquire()
            exchange = conn.send(head, body)
            try:
                await exchange.head
                break
            except httpx.RemoteProtocolError:
                pool.release(conn)
                if attempt == 2 or not reused or exchange.received:
                    raise
            except BaseException:
                conn.close()
                pool.release(conn)
                raise
        headers = exchange.headers
        if exchange.status < 300 and _is_event_stream(headers):
            return httpx.Response(
                exchange.status,
                headers=headers,
                stream=_Body(pool, conn, exchange),
                request=request,
                extensions=dict(_HTTP11),
            )
        try:
            await exchange.done
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)
        return httpx.Response(  # unread, as transports return them; the bytes are all here
            exchange.status,
            headers=headers,
            stream=httpx.ByteStream(b"".join(exchange.chunks)),
            request=request,
            extensions=dict(_HTTP11),
        )

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


def _serialise(request: httpx.Request, body: bytes) -> tuple[bytes, bytes]:
    """The request line and headers (Host and Content-Length added when absent).

    A CR or LF inside a header would end its line early and let a value inject
    headers of its own, so the head must hold exactly one CRLF per line: two
    ``bytes.count`` calls check that for all headers at once (``bad in value``
    per header costs a raised and cleared TypeError inside CPython each time).
    """
    lines = [request.method.encode("ascii") + b" " + request.url.raw_path + b" HTTP/1.1"]
    names = set()
    for name, value in request.headers.raw:
        names.add(name.lower())
        lines.append(name + b": " + value)
    if b"host" not in names:
        lines.append(b"Host: " + request.url.netloc)
    if b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    breaks = len(lines) + 1
    if head.count(b"\r") != breaks or head.count(b"\n") != breaks:
        raise httpx.LocalProtocolError(f"{_line_with_break(lines)} contains a line break")
    return head, body


def _line_with_break(lines: list[bytes]) -> str:
    """Which line of a request head holds a CR or LF, for the error message."""
    for index, line in enumerate(lines):
        if line.count(b"\r") or line.count(b"\n"):
            return "the request line" if index == 0 else f"header {line.partition(b':')[0]!r}"
    return "the request head"


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.lower().startswith(_EVENT_STREAM)
    return False
