"""The model-id guard in front of the llama.cpp app (a real ASGI app over httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hieramas.llm.local.launcher import ModelGuard


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"path": request.url.path, "len": len(body), "body": body.decode()})


APP = Starlette(
    routes=[
        Route("/v1/chat/completions", echo, methods=["POST"]),
        Route("/v1/completions", echo, methods=["POST"]),
        Route("/v1/models", echo, methods=["GET"]),
    ]
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ModelGuard(APP, ["smollm2-135m", "qwen2.5-coder-0.5b"]))
    async with httpx.AsyncClient(transport=transport, base_url="http://local.test") as c:
        yield c


async def test_known_model_passes_with_body_intact(client: httpx.AsyncClient) -> None:
    payload = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "x" * 100_000}]}
    resp = await client.post("/v1/chat/completions", json=payload)
    assert resp.status_code == 200
    assert resp.json()["body"] == httpx.Request("POST", "/", json=payload).content.decode()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_unknown_model_is_404_model_not_found(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.post(path, json={"model": "gpt-4o", "prompt": "hi"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "model_not_found"
    assert "'gpt-4o'" in error["message"] and "smollm2-135m" in error["message"]


async def test_no_model_field_and_malformed_json_reach_the_app(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/chat/completions", json={"messages": []})).status_code == 200
    resp = await client.post("/v1/chat/completions", content=b"{not json")
    assert resp.status_code == 200 and resp.json()["body"] == "{not json"


async def test_other_routes_are_untouched(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models")).json()["path"] == "/v1/models"
