"""Entry point of the server subprocess: ``llama_cpp.server`` behind a model-id guard.

``python -m hieramas.llm.local.launcher --config_file X`` runs the same app as
``python -m llama_cpp.server --config_file X`` (same multi-model config file), with one
difference: a request naming a model id the server does not serve gets a 404
(``model_not_found``, as OpenAI answers) instead of being silently answered by the default
model — which would make a model-selection policy learn from the wrong model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["ModelGuard", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARDED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
MAX_BODY = 64 * 1024 * 1024


class ModelGuard:
    """ASGI middleware: 404 for a JSON ``model`` that is not one of ``aliases``."""

    def __init__(self, app: ASGIApp, aliases: list[str]) -> None:
        self.app = app
        self.aliases = list(aliases)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in GUARDED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await self._reject(send, 413, "request body too large", "request_too_large")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        model = self._model_of(body)
        if model is not None and model not in self.aliases:
            await self._reject(
                send,
                404,
                f"The model {model!r} does not exist on this server; it serves {self.aliases}",
                "model_not_found",
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _model_of(body: bytes) -> str | None:
        try:
            data = json.loads(body)
        except ValueError:
            return None  # let the app answer malformed JSON itself
        model = data.get("model") if isinstance(data, dict) else None
        return model if isinstance(model, str) else None

    @staticmethod
    async def _reject(send: Send, status: int, message: str, code: str) -> None:
        payload = json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def main(argv: list[str] | None = None) -> None:
    """Load the multi-model config file and serve it with uvicorn."""
    parser = argparse.ArgumentParser(prog="python -m hieramas.llm.local.launcher")
    parser.add_argument("--config_file", required=True, type=Path)
    args = parser.parse_args(argv)

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ConfigFileSettings, ServerSettings

    config = ConfigFileSettings.model_validate_json(args.config_file.read_bytes())
    server = ServerSettings.model_validate(config)
    app = create_app(server_settings=server, model_settings=config.models)
    aliases = [m.model_alias or m.model for m in config.models]
    uvicorn.run(ModelGuard(app, aliases), host=server.host, port=server.port, log_level="info")


if __name__ == "__main__":
    main()
