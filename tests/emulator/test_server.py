"""The HTTP server on loopback: labels, usage, determinism, errors, streaming, openai client."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from hieramas.emulator.profiles import load_profiles
from hieramas.emulator.runner import running_emulator
from hieramas.tasks import prompts
from hieramas.tasks.datasets import Item, load


@pytest.fixture(scope="module")
def client(emulator_url: str) -> httpx.Client:
    with httpx.Client(base_url=emulator_url, timeout=30) as c:
        yield c  # type: ignore[misc]


@functools.cache
def _mmlu_items() -> list[Item]:
    return load("mmlu_redux")[:50]


def _mmlu_messages(n: int = 0) -> list[dict[str, str]]:
    item = _mmlu_items()[n]
    return prompts.proposer_messages("mmlu", "Lawyer", item.question, [])


def test_models_are_listed_and_labelled(client: httpx.Client) -> None:
    resp = client.get("/models")
    assert resp.status_code == 200 and resp.headers["x-emulated"] == "true"
    data = resp.json()["data"]
    assert {m["id"] for m in data} == set(load_profiles().models)
    assert all(m["emulated"] and m["owned_by"] == "hieramas-emulator" for m in data)
    one = client.get("/models/gpt-5-mini").json()
    assert one["pricing"] == {"prompt_per_m": 0.25, "completion_per_m": 2.0}
    assert client.get("/models/nope").status_code == 404


def test_completion_is_labelled_with_usage_and_cost(client: httpx.Client) -> None:
    resp = client.post(
        "/chat/completions", json={"model": "qwen3-8b", "messages": _mmlu_messages()}
    )
    assert resp.status_code == 200
    assert resp.headers["x-emulated"] == "true"
    body = resp.json()
    assert body["system_fingerprint"] == "hieramas-emulator" and body["emulated"] is True
    usage = body["usage"]
    assert usage["prompt_tokens"] > 50 and usage["completion_tokens"] > 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    price = load_profiles().models["qwen3-8b"].prices
    expected = (
        usage["prompt_tokens"] * price.input_per_m + usage["completion_tokens"] * price.output_per_m
    ) / 1e6
    assert usage["cost"] == pytest.approx(expected)
    text = body["choices"][0]["message"]["content"]
    assert text.rstrip().splitlines()[-1].startswith("The answer is (")
    assert body["choices"][0]["finish_reason"] == "stop"


def test_deterministic_for_a_seed_and_different_across_seeds(
    client: httpx.Client, datasets_dir: Path
) -> None:
    bodies = [
        {"model": model, "messages": _mmlu_messages(n)}
        for n in range(12)
        for model in ("llama-8b", "gpt-4o-mini")
    ]
    first = [client.post("/chat/completions", json=b).json() for b in bodies]
    again = [client.post("/chat/completions", json=b).json() for b in bodies]
    assert [r["choices"] for r in first] == [r["choices"] for r in again]
    assert [r["usage"] for r in first] == [r["usage"] for r in again]
    assert [r["id"] for r in first] == [r["id"] for r in again]
    # a request seed changes the draw too
    seeded = [client.post("/chat/completions", json={**b, "seed": 7}).json() for b in bodies]
    assert [r["choices"] for r in seeded] != [r["choices"] for r in first]
    with (
        running_emulator(seed=1, data_dir=datasets_dir) as other,
        httpx.Client(base_url=other) as c,
    ):
        moved = [c.post("/chat/completions", json=b).json() for b in bodies]
    assert moved[0]["system_fingerprint"] == "hieramas-emulator"
    assert [r["choices"] for r in moved] != [r["choices"] for r in first]


def test_unknown_prompts_get_a_generic_reply(client: httpx.Client) -> None:
    resp = client.post(
        "/chat/completions",
        json={"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Write a haiku."}]},
    )
    assert resp.status_code == 200
    text = resp.json()["choices"][0]["message"]["content"]
    assert len(text.split()) > 5 and resp.json()["usage"]["completion_tokens"] > 5
    general = prompts.proposer_messages("general", "Analyst", "Is tea better than coffee?", [])
    text = client.post(
        "/chat/completions", json={"model": "gpt-5-nano", "messages": general}
    ).json()
    assert text["choices"][0]["message"]["content"].splitlines()[-1].startswith("Final answer: ")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "llama-8b"}', 400, "messages"),
        (b'{"model": "llama-8b", "messages": []}', 400, "messages"),
        (b'{"model": "llama-8b", "messages": [{"role": "user", "content": ""}]}', 400, "empty"),
        (b'{"model": "llama-8b", "messages": "hi"}', 400, "messages"),
        (b'{"model": "llama-8b", "n": 0, "messages": [{"role": "user", "content": "x"}]}', 400, "n"),
        (b'{"model": "llama-8b", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}', 400, "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "gpt-7", "messages": [{"role": "user", "content": "x"}]}', 404, "not in the emulated pool"),
        (b"[1, 2]", 400, "invalid request"),
    ],
)  # fmt: skip
def test_bad_requests_get_clear_json_errors(
    client: httpx.Client, body: bytes, status: int, needle: str
) -> None:
    resp = client.post(
        "/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status
    err = resp.json()["error"]
    assert needle in err["message"] and err["type"]


def test_wrong_method_and_path_are_json_errors(client: httpx.Client) -> None:
    resp = client.get("/chat/completions")
    assert resp.status_code == 405 and "error" in resp.json()
    resp = client.post("/nowhere", json={})
    assert resp.status_code == 404 and "error" in resp.json()


def test_max_tokens_truncates_and_n_gives_several_choices(client: httpx.Client) -> None:
    body = {"model": "qwen3-8b", "messages": _mmlu_messages(3), "max_tokens": 10}
    out = client.post("/chat/completions", json=body).json()
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] <= 10
    out = client.post("/chat/completions", json={**body, "max_tokens": None, "n": 3}).json()
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in out["choices"]}) > 1


def test_streaming_matches_the_plain_reply(client: httpx.Client) -> None:
    body = {"model": "deepseek-v3", "messages": _mmlu_messages(5)}
    plain = client.post("/chat/completions", json=body).json()
    pieces: list[str] = []
    usage = None
    with client.stream(
        "POST", "/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
    ) as resp:  # fmt: skip
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        assert chunk["object"] == "chat.completion.chunk" and chunk["emulated"] is True
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            pieces.append(choice["delta"].get("content", ""))
    assert "".join(pieces) == plain["choices"][0]["message"]["content"]
    assert usage == plain["usage"]


def test_official_openai_client(emulator_url: str) -> None:
    oa = openai.OpenAI(base_url=emulator_url, api_key="unused", max_retries=0)
    assert "llama-8b" in {m.id for m in oa.models.list()}
    done = oa.chat.completions.create(model="llama-8b", messages=_mmlu_messages(1))  # type: ignore[arg-type]
    assert done.system_fingerprint == "hieramas-emulator"
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert done.choices[0].message.content
    streamed = oa.chat.completions.create(
        model="llama-8b",
        messages=_mmlu_messages(1),
        stream=True,  # type: ignore[arg-type]
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == done.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model="llama-8b", messages=[])


def test_latency_is_simulated_and_scaled(datasets_dir: Path) -> None:
    with running_emulator(latency_scale=0.1, data_dir=datasets_dir) as url:
        t0 = time.perf_counter()
        resp = httpx.post(f"{url}/chat/completions", timeout=30,
                          json={"model": "gpt-5-mini", "messages": _mmlu_messages(2)})  # fmt: skip
        elapsed = time.perf_counter() - t0
    simulated = resp.json()["emulator"]["latency_s"]
    assert simulated > 1.0  # gpt-5-mini: TTFT ≈ 2 s plus decoding
    assert elapsed >= 0.1 * simulated * 0.95


def test_content_parts_are_read_as_text(client: httpx.Client) -> None:
    parts = [{"type": "text", "text": m["content"]} for m in _mmlu_messages(4)]
    messages = [{"role": "system", "content": parts[0:1]}, {"role": "user", "content": parts[1:]}]
    as_parts = client.post("/chat/completions", json={"model": "qwen3-8b", "messages": messages})
    plain = client.post(
        "/chat/completions", json={"model": "qwen3-8b", "messages": _mmlu_messages(4)}
    )
    assert as_parts.status_code == 200
    assert as_parts.json()["choices"] == plain.json()["choices"]


async def test_without_any_dataset_every_reply_is_generic(tmp_path: Path) -> None:
    from hieramas.emulator.api import ChatCompletionRequest
    from hieramas.emulator.engine import Engine

    engine = Engine.create(data_dir=tmp_path, latency_scale=0.0)
    assert engine.describe()["items_indexed"] == 0
    req = ChatCompletionRequest.model_validate({"model": "llama-8b", "messages": _mmlu_messages(0)})
    done = await engine.complete(req)
    assert done.choices[0].text and "The answer is" not in done.choices[0].text
