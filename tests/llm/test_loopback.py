"""The loopback server's scripted model ids, latency and process entry point, over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from hieramas.llm.loopback import LoopbackLLM
from hieramas.natsserver import free_port


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM(record=False) as srv:
        yield srv


def _chat(url: str, model: str, content: str = "What is 2+2?") -> httpx.Response:
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "hmm"}]
    return httpx.post(f"{url}/chat/completions", json={"model": model, "messages": messages})


def _text(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


def test_scripted_replies(server: LoopbackLLM) -> None:
    url = server.base_url
    assert _text(_chat(url, "fixed:B")) == "Let me reason about it. The answer is B."
    assert _text(_chat(url, "echo", "repeat me")) == "repeat me"  # the last *user* message
    assert _text(_chat(url, "big:5000")) == "x" * 5000
    assert _text(_chat(url, "slow:0.01")) == "Thinking slowly. The answer is A."
    assert _text(_chat(url, "anything")) == "ok: hmm"  # the last message
    usage = _chat(url, "big:400", "y" * 80).json()["usage"]
    assert usage == {"prompt_tokens": 20, "completion_tokens": 100, "total_tokens": 120}


def test_scripted_failures_and_bad_requests(server: LoopbackLLM) -> None:
    url = server.base_url
    assert _chat(url, "fail").status_code == 500
    busy = _chat(url, "fail429")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "0"
    assert httpx.post(f"{url}/chat/completions", content=b"not json").status_code == 400
    assert httpx.post(f"{url}/chat/completions", json=[1]).status_code == 400


def test_models_stats_and_unknown_routes(server: LoopbackLLM) -> None:
    models = httpx.get(f"{server.base_url}/models").json()
    assert [m["id"] for m in models["data"]] == ["fixed:A"]
    assert httpx.get(f"{server.base_url}/chat/completions").status_code == 404
    stats = f"http://127.0.0.1:{server.port}/stats"
    before = httpx.get(stats).json()["calls"]
    _chat(server.base_url, "fixed:A")
    assert httpx.get(stats).json()["calls"] == before + 1


def test_latency_delays_every_reply() -> None:
    with LoopbackLLM(latency_s=0.2) as srv:
        started = time.perf_counter()
        assert _chat(srv.base_url, "fail").status_code == 500
        assert _text(_chat(srv.base_url, "fixed:C")).endswith("The answer is C.")
        assert time.perf_counter() - started >= 0.4
        assert srv.requests[-1].body["model"] == "fixed:C"


def test_runs_as_a_process_with_latency() -> None:
    port = free_port()
    args = ["--port", str(port), "--latency", "0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "hieramas.llm.loopback", *args])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/models", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        started = time.perf_counter()
        assert _text(_chat(url, "fixed:D")).endswith("The answer is D.")
        assert time.perf_counter() - started >= 0.3
    finally:
        proc.terminate()
        proc.wait(10)
