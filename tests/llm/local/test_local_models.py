"""Real llama.cpp server with the real small GGUF models (SmolLM2-135M, Qwen2.5-Coder-0.5B).

Skipped (with the reason) when llama-cpp-python or the models are absent; with
``HIERAMAS_REQUIRE_LOCAL=1`` (CI, after ``scripts/install_local.sh --small``) it fails instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hieramas.llm.local import (
    LOCAL_MODELS,
    SMALL_MODELS,
    find_model_file,
    free_port,
    llama_cpp_available,
    running_local_server,
)
from hieramas.llm.types import ChatRequest, EndpointSpec

pytestmark = [pytest.mark.local_models, pytest.mark.slow]

ALIASES = [LOCAL_MODELS[k].alias for k in SMALL_MODELS]
PROMPT = "What is the capital of France? Answer in one short sentence."


def _unavailable() -> str | None:
    if not llama_cpp_available():
        return "llama-cpp-python[server] is not installed (run scripts/install_local.sh --small)"
    missing = [k for k in SMALL_MODELS if find_model_file(LOCAL_MODELS[k]) is None]
    if missing:
        return f"local models not assembled: {missing} (run scripts/install_local.sh --small)"
    return None


def _require_local() -> None:
    reason = _unavailable()
    if reason is None:
        return
    if os.environ.get("HIERAMAS_REQUIRE_LOCAL") == "1":
        pytest.fail(f"HIERAMAS_REQUIRE_LOCAL=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    _require_local()
    with running_local_server(SMALL_MODELS, n_threads=2, n_ctx=2048) as url:
        yield url


def _chat(base_url: str, model: str, content: str, max_tokens: int = 24) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "seed": 1,
    }
    resp = httpx.post(f"{base_url}/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def _n_tokens(base_url: str, model: str, text: str) -> int:
    root = base_url.removesuffix("/v1")
    resp = httpx.post(f"{root}/extras/tokenize", json={"model": model, "input": text}, timeout=60)
    assert resp.status_code == 200, resp.text
    return len(resp.json()["tokens"])


LONG_PROMPT = "Say hi. " + "Ignore this filler sentence. " * 20


@pytest.fixture(scope="module")
def observations(base_url: str) -> dict[str, dict[str, Any]]:
    """All calls grouped by model: the server keeps one model resident and swaps on demand."""
    seen: dict[str, dict[str, Any]] = {}
    for alias in ALIASES:
        answer = _chat(base_url, alias, PROMPT)
        text = answer["choices"][0]["message"]["content"]
        seen[alias] = {
            "answer": answer,
            "text": text,
            "n_prompt_text": _n_tokens(base_url, alias, PROMPT),
            "n_answer_text": _n_tokens(base_url, alias, text),
            "short": _chat(base_url, alias, "Say hi.", max_tokens=4)["usage"],
            "long": _chat(base_url, alias, LONG_PROMPT, max_tokens=4)["usage"],
        }
    return seen


def test_models_endpoint_lists_the_aliases(base_url: str) -> None:
    ids = [m["id"] for m in httpx.get(f"{base_url}/models", timeout=30).json()["data"]]
    assert ids == ALIASES


def test_unknown_model_is_refused_not_substituted(base_url: str) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    resp = httpx.post(f"{base_url}/chat/completions", json=body, timeout=60)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("alias", ALIASES)
def test_real_completion_with_real_usage(
    observations: dict[str, dict[str, Any]], alias: str
) -> None:
    seen = observations[alias]
    data, text, usage = seen["answer"], seen["text"], seen["answer"]["usage"]

    assert text.strip(), data
    assert data["model"] == alias
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Prompt = the user text plus the chat template's tokens (role markers, system prompt).
    n_user = seen["n_prompt_text"]
    assert n_user + 2 <= usage["prompt_tokens"] <= n_user + 60, (n_user, usage)
    # Completion: what came back, plus at most a stop token.
    assert 1 <= usage["completion_tokens"] <= 24
    assert abs(usage["completion_tokens"] - seen["n_answer_text"]) <= 2, (seen, usage)


def test_usage_grows_with_the_prompt_and_differs_by_tokenizer(
    observations: dict[str, dict[str, Any]],
) -> None:
    for alias in ALIASES:
        short, long = observations[alias]["short"], observations[alias]["long"]
        assert long["prompt_tokens"] >= short["prompt_tokens"] + 80, (alias, short, long)
    qwen, smol = (observations[a]["short"]["prompt_tokens"] for a in ALIASES)
    assert qwen != smol  # different tokenizers and templates (Qwen adds a system turn)


def test_greedy_decoding_is_repeatable(base_url: str) -> None:
    first = _chat(base_url, ALIASES[-1], "Count from 1 to 5.", max_tokens=16)
    second = _chat(base_url, ALIASES[-1], "Count from 1 to 5.", max_tokens=16)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]


async def test_project_chat_client_gets_real_tokens_and_notional_cost(base_url: str) -> None:
    from hieramas.llm.client import OpenAIChatClient

    spec = LOCAL_MODELS["135m"].model_spec("local")
    endpoint = EndpointSpec(name="local", base_url=base_url, timeout_s=120)
    request = ChatRequest(model=spec, messages=[{"role": "user", "content": PROMPT}], max_tokens=16)
    async with OpenAIChatClient() as client:
        result = await client.chat(request, endpoint)
    assert result.text.strip()
    assert result.prompt_tokens > 5 and 1 <= result.completion_tokens <= 16
    assert not result.usage_estimated
    assert result.cost_usd == pytest.approx(
        spec.cost(result.prompt_tokens, result.completion_tokens)
    )
    assert spec.notional_prices


def test_cli_serve_reports_ready_and_forwards_sigterm() -> None:
    _require_local()
    port = free_port()
    cmd = [sys.executable, "-m", "hieramas.llm.local", "serve", "--models", "135m"]
    cmd += ["--port", str(port), "--n-ctx", "512"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        ready = ""
        while time.monotonic() < deadline and "ready" not in ready:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            ready += line
        assert f"http://127.0.0.1:{port}/v1" in ready, ready
        ids = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()["data"]
        assert [m["id"] for m in ids] == ["smollm2-135m"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
