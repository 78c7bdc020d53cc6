"""The OpenAI-compatible HTTP front of the emulator (starlette).

Routes: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(plain JSON, or server-sent events with ``"stream": true``) and ``GET /health``.
Every reply is labelled emulated (``system_fingerprint``, an ``emulated`` field
and an ``X-Emulated`` header).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hieramas import metrics
from hieramas.emulator.api import (
    ApiError,
    ChatCompletionRequest,
    chunk_body,
    error_body,
    parse_request,
)
from hieramas.emulator.engine import Completion, Engine
from hieramas.metrics import ServedCounts

__all__ = ["EMULATED_HEADERS", "build_app", "create_app"]

log = structlog.get_logger(__name__)

EMULATED_HEADERS = {"X-Emulated": "true", "X-Emulator": "hieramas-emulator"}
_STREAM_CHUNK_TOKENS = 16


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(
        data,
        status_code=status,
        media_type="application/json",
        headers={**EMULATED_HEADERS, **(headers or {})},
    )


def _error(err: ApiError) -> Response:
    return _json(error_body(err), status=err.status)


def create_app(engine: Engine) -> Starlette:
    """The ASGI app serving ``engine``."""
    served = ServedCounts()
    metrics.track("emulator", served)  # read when /metrics is scraped

    async def models(request: Request) -> Response:
        return _json({"object": "list", "data": engine.model_cards()})

    async def model(request: Request) -> Response:
        name = request.path_params["model_id"]
        card = engine.model_card(name)
        if card is None:
            return _error(ApiError(404, f"model {name!r} not found", code="model_not_found"))
        return _json(card)

    async def health(request: Request) -> Response:
        return _json({"status": "ok", **engine.describe()})

    async def chat(request: Request) -> Response:
        try:
            req = parse_request(await request.body())
            completion = await engine.complete(req)
        except ApiError as err:
            served.requests["", err.status] += 1  # no model label: the name may be anything
            return _error(err)
        served.count(completion.model, completion.body.get("usage"))
        headers = {"X-Emulator-Seed": str(engine.seed)}
        delay = completion.latency_s * engine.latency_scale
        if req.stream:
            return StreamingResponse(
                _stream(completion, engine.latency_scale, req),
                media_type="text/event-stream",
                headers={**EMULATED_HEADERS, **headers, "Cache-Control": "no-cache"},
            )
        if delay > 0:
            await asyncio.sleep(delay)
        return _json(completion.body, headers=headers)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        return _error(ApiError(status, f"{request.method} {request.url.path}: {detail}"))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("emulator_internal_error", path=request.url.path)
        return _error(ApiError(500, f"internal emulator error: {exc}", kind="server_error"))

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found, Exception: server_error},
    )


async def _stream(
    completion: Completion, scale: float, req: ChatCompletionRequest
) -> AsyncIterator[bytes]:
    """Server-sent events: role, content pieces paced by the simulated speed, usage, DONE."""

    def chunk(
        index: int, delta: dict[str, str], finish: str | None, usage: dict[str, Any] | None = None
    ) -> bytes:
        return _sse(
            chunk_body(
                completion_id=completion.id,
                created=completion.created,
                model=completion.model,
                index=index,
                delta=delta,
                finish_reason=finish,
                usage=usage,
            )
        )

    options = (req.model_extra or {}).get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    for index, choice in enumerate(completion.choices):
        if scale > 0:
            await asyncio.sleep(choice.ttft_s * scale)
        yield chunk(index, {"role": "assistant", "content": ""}, None)
        pieces = _pieces(choice.text)
        per_piece = (
            scale * (choice.latency_s - choice.ttft_s) / max(len(pieces), 1) if scale > 0 else 0.0
        )
        for piece in pieces:
            if per_piece > 0:
                await asyncio.sleep(per_piece)
            yield chunk(index, {"content": piece}, None)
        yield chunk(index, {}, choice.finish_reason)
    if include_usage:
        yield chunk(0, {}, None, usage=completion.body["usage"])
    yield b"data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    step = _STREAM_CHUNK_TOKENS
    return [
        " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
        for i in range(0, len(words), step)
    ] or [""]


def _sse(body: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


def build_app(
    profiles_path: str | Path | None = None,
    seed: int = 0,
    latency_scale: float = 1.0,
    data_dir: str | Path | None = None,
) -> Starlette:
    """Load profiles and datasets, calibrate, and return the ASGI app (start-up work done here)."""
    started = time.perf_counter()
    engine = Engine.create(
        profiles_path=profiles_path, seed=seed, latency_scale=latency_scale, data_dir=data_dir
    )
    app = create_app(engine)
    app.state.engine = engine
    log.info(
        "emulator_ready",
        seconds=round(time.perf_counter() - started, 3),
        **engine.describe(),
    )
    return app
