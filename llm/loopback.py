"""A tiny, instant OpenAI-compatible server on loopback, for tests and benchmarks of the client.

Not the emulator: it answers at once with a fixed echo, and the request's
``model`` id picks a behaviour so tests can exercise real HTTP edge cases:

- any other id: ``"ok: <last message>"`` with ``usage``;
- ``no-usage`` / ``null-usage``: no ``usage`` / ``usage`` with nulls;
- ``flaky-<n>``: the first ``n`` requests for that id get 503 (``Retry-After: 0``);
- ``slow-<ms>``: answer after ``ms`` milliseconds;
- ``status-<code>``: answer ``code`` with an OpenAI-style error object;
- ``ttft-<ms>``: wait ``ms`` milliseconds before the content (after the headers
  and the role event when streaming).

``"stream": true`` is answered with server-sent ``chat.completion.chunk``
events (role, one event per word, finish, usage when
``stream_options.include_usage``, ``[DONE]``).

Run it in a thread (:class:`LoopbackLLM`) or as a process:
``python -m hieramas.llm.loopback --port 8765``.
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

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


def build_app(log: _Log | None = None) -> Starlette:
    """The Starlette app; requests are recorded into ``log`` when given."""
    state = log if log is not None else _Log(record=False)

    async def chat(request: Request) -> Response:
        body = await request.json()
        if state.record:
            port = request.client.port if request.client is not None else None
            state.requests.append(RecordedRequest(body, dict(request.headers), port))
        model = str(body.get("model", ""))
        state.seen[model] += 1
        messages = body.get("messages") or [{}]
        text = f"ok: {messages[-1].get('content', '')}"
        if model.startswith("flaky-") and state.seen[model] <= int(model.split("-", 1)[1]):
            return JSONResponse(
                {"error": {"message": "temporarily overloaded", "code": 503}},
                status_code=503,
                headers={"Retry-After": "0"},
            )
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-", 1)[1]) / 1000)
        if model.startswith("status-"):
            code = int(model.split("-", 1)[1])
            return JSONResponse({"error": {"message": f"status {code}", "code": code}}, code)
        if model == "no-usage":
            usage: object = None
        elif model == "null-usage":
            usage = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
        else:
            usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        delay = int(model.split("-", 1)[1]) / 1000 if model.startswith("ttft-") else 0.0
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage"))
            events = _events(model, text, usage if include_usage else None, delay)
            return StreamingResponse(events, media_type="text/event-stream")
        await asyncio.sleep(delay)
        return JSONResponse(_reply(model, text, usage))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class LoopbackLLM:
    """The loopback server running in a background thread on a free 127.0.0.1 port."""

    def __init__(self, *, record: bool = True) -> None:
        self._log = _Log(record=record)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self._log), lifespan="off", log_level="warning", access_log=False
        )
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
) -> None:
    """Serve the loopback OpenAI-compatible server in the foreground."""
    uvicorn.run(build_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    typer.run(main)
