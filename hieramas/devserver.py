"""A scripted OpenAI-compatible server for tests and runtime benchmarks.

Behaviour is chosen by the requested model id, so one server can play a
whole pool:

============== ===========================================================
model id       reply
============== ===========================================================
``fixed:X``    ``"Reasoning... The answer is X."`` (any text X)
``echo``       the last user message
``fail``       HTTP 500
``fail429``    HTTP 429 with ``Retry-After: 0``
``slow:S``     sleeps S seconds, then like ``fixed:A``
``big:N``      N characters of text
anything else ``"The answer is A."``
============== ===========================================================

``--latency`` adds a fixed delay to every reply (``0`` = instant).  Every
reply carries ``usage``.  Run: ``python -m hieramas.devserver --port 8901``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hieramas.natsserver import free_port

__all__ = ["build_app", "main", "running_devserver"]


def build_app(latency_s: float = 0.0) -> Starlette:
    """The scripted server's ASGI app."""
    counter = {"calls": 0}

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fixed:A", "object": "model"}]})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(counter)

    async def chat(request: Request) -> JSONResponse:
        try:
            body: dict[str, Any] = await request.json()
            model = str(body["model"])
            messages = body["messages"]
        except Exception:
            return JSONResponse({"error": {"message": "bad request"}}, status_code=400)
        counter["calls"] += 1
        if latency_s:
            await asyncio.sleep(latency_s)
        if model == "fail":
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=500)
        if model == "fail429":
            return JSONResponse(
                {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"}
            )
        if model.startswith("slow:"):
            await asyncio.sleep(float(model.split(":", 1)[1]))
            text = "Thinking slowly. The answer is A."
        elif model.startswith("fixed:"):
            text = f"Let me reason about it. The answer is {model.split(':', 1)[1]}."
        elif model == "echo":
            text = str(next((m["content"] for m in reversed(messages) if m["role"] == "user"), ""))
        elif model.startswith("big:"):
            text = "x" * int(model.split(":", 1)[1])
        else:
            text = "The answer is A."
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        return JSONResponse(
            {
                "id": f"chatcmpl-{counter['calls']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": max(1, prompt_chars // 4),
                    "completion_tokens": max(1, len(text) // 4),
                    "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
                },
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/stats", stats),
        ]
    )


@contextmanager
def running_devserver(latency_s: float = 0.0, port: int | None = None) -> Iterator[str]:
    """Serve the scripted app on loopback in a thread; yields its ``/v1`` base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        build_app(latency_s), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(5)


def main() -> None:
    """``python -m hieramas.devserver [--port N] [--latency S]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.latency), host="127.0.0.1", port=args.port, log_level="warning",
        lifespan="off", access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
