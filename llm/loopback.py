"""A tiny, instant OpenAI-compatible server on loopback, for tests and benchmarks.

Not the emulator: it answers at once (plus ``latency_s``, ``0`` by default),
and the request's ``model`` id picks a behaviour, so one server can play a
whole pool and tests can exercise real HTTP edge cases:

================= ==========================================================
model id          reply
================= ==========================================================
``fixed:X``       ``"Let me reason about it. The answer is X."`` (any text X)
``echo``          the last user message
``big:N``         N characters of text
``slow:S``        after S seconds, ``"Thinking slowly. The answer is A."``
``fail``          HTTP 500
``fail429``       HTTP 429 with ``Retry-After: 0``
``flaky-<n>``     the first ``n`` requests for that id get 503
                  (``Retry-After: 0``), later ones as "anything else"
``slow-<ms>``     after ``ms`` milliseconds, as "anything else"
``status-<code>`` HTTP ``code`` with an OpenAI-style error object
``ttft-<ms>``     waits ``ms`` milliseconds before the content (after the
                  headers and the role event when streaming)
``no-usage``      as "anything else" without ``usage``
``null-usage``    as "anything else" with ``usage`` fields ``null``
anything else     ``"ok: <last message>"``
================= ==========================================================

Usage is 7 prompt + 3 completion tokens, except for the ``name:arg`` scripts
(``fixed``/``echo``/``big``/``slow``), which count about 4 characters a token.
``"stream": true`` is answered with server-sent ``chat.completion.chunk``
events (role, one event per word, finish, usage when
``stream_options.include_usage``, ``[DONE]``).  ``GET /v1/models`` lists one
model (a readiness probe); ``GET /stats`` gives ``{"calls": n}``.

Run it in a thread (:class:`LoopbackLLM`) or as a process:
``python -m hieramas.llm.loopback --port 8765 [--latency 0.2]``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any

import typer
import uvicorn
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LoopbackLLM", "RecordedRequest", "build_app", "main"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What one request to the loopback server carried."""

    body: dict[str, Any]
    headers: dict[str, str]
    client_port: int | None


@dataclass(slots=True)
class _Log:
    requests: list[RecordedRequest] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    record: bool = True


def _reply(model: str, text: str, usage: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _events(model: str, text: str, usage: object, delay: float) -> AsyncIterator[bytes]:
    yield _chunk(model, {"role": "assistant", "content": ""}, None)
    await asyncio.sleep(delay)
    for i, word in enumerate(text.split(" ")):
        yield _chunk(model, {"content": word if i == 0 else " " + word}, None)
    yield _chunk(model, {}, "stop")
    if usage is not None:
        body = {"id": "chatcmpl-loopback", "model": model, "choices": [], "usage": usage}
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


_FIXED_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
_NULL_USAGE = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
_MODELS = {"object": "list", "data": [{"id": "fixed:A", "object": "model", "owned_by": "loopback"}]}


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code}}, code, headers=headers)


def _script(model: str, messages: list[dict[str, Any]]) -> tuple[str, object] | None:
    """Text and usage of a ``name:arg`` script (``None`` for other ids)."""
    kind, colon, arg = model.partition(":")
    if kind == "fixed" and colon:
        text = f"Let me reason about it. The answer is {arg}."
    elif model == "echo":
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        text = str(users[-1]) if users else ""
    elif kind == "big" and colon:
        text = "x" * int(arg)
    elif kind == "slow" and colon:
        text = "Thinking slowly. The answer is A."
    else:
        return None
    prompt = max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)
    completion = max(1, len(text) // 4)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return text, usage | {"total_tokens": prompt + completion}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def build_app(log: _Log | None = None, latency_s: float = 0.0) -> ASGIApp:
    """The ASGI app; requests are recorded into ``log`` when given.

    ``latency_s`` delays every chat reply (``0`` = instant).  A bare ASGI
    dispatcher over Starlette responses: the routing and request objects of a
    full Starlette app would cost a fifth of the per-request CPU.
    """
    state = log if log is not None else _Log(record=False)

    async def chat(scope: Scope, raw: bytes) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "bad request: a JSON object is expected")
        if state.record:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            client = scope.get("client")
            state.requests.append(RecordedRequest(body, headers, client[1] if client else None))
        model = str(body.get("model", ""))
        state.seen[model] += 1
        messages = body.get("messages") or [{}]
        if latency_s:
            await asyncio.sleep(latency_s)
        if model == "fail":
            return _error(500, "scripted failure")
        if model == "fail429":
            return _error(429, "slow down", {"Retry-After": "0"})
        if model.startswith("flaky-") and state.seen[model] <= int(model.split("-", 1)[1]):
            return _error(503, "temporarily overloaded", {"Retry-After": "0"})
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-", 1)[1]) / 1000)
        elif model.startswith("slow:"):
            await asyncio.sleep(float(model.split(":", 1)[1]))
        if model.startswith("status-"):
            code = int(model.split("-", 1)[1])
            return _error(code, f"status {code}")
        scripted = _script(model, messages)
        if scripted is not None:
            text, usage = scripted
        else:
            text = f"ok: {messages[-1].get('content', '')}"
            usage = {"no-usage": None, "null-usage": _NULL_USAGE}.get(model, _FIXED_USAGE)
        delay = int(model.split("-", 1)[1]) / 1000 if model.startswith("ttft-") else 0.0
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage"))
            events = _events(model, text, usage if include_usage else None, delay)
            return StreamingResponse(events, media_type="text/event-stream")
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(_reply(model, text, usage))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"])
        if route == ("POST", "/v1/chat/completions"):
            response = await chat(scope, await _read_body(receive))
        elif route == ("GET", "/v1/models"):
            response = JSONResponse(_MODELS)
        elif route == ("GET", "/stats"):
            response = JSONResponse({"calls": state.seen.total()})
        else:
            response = _error(404, f"no route {route[0]} {route[1]}")
        await response(scope, receive, send)

    return app


class LoopbackLLM:
    """The loopback server running in a background thread on a free 127.0.0.1 port.

    ``record=False`` keeps no request log (for long-lived servers); ``latency_s``
    delays every chat reply.
    """

    def __init__(self, *, record: bool = True, latency_s: float = 0.0) -> None:
        self._log = _Log(record=record)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self._log, latency_s), lifespan="off", log_level="warning",
            access_log=False, log_config=None,  # log through the host's logging set-up
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (when recording)."""
        return self._log.requests

    def start(self, timeout_s: float = 10.0) -> LoopbackLLM:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.005)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            deadline.wait(0.005)
        raise RuntimeError("loopback LLM server did not start")

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> LoopbackLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1")] = 8765,
    latency: Annotated[float, typer.Option(help="Seconds added to every chat reply")] = 0.0,
) -> None:
    """Serve the loopback OpenAI-compatible server in the foreground."""
    uvicorn.run(
        build_app(latency_s=latency), host="127.0.0.1", port=port, log_level="warning",
        lifespan="off", access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
