"""Record/replay cache: hits, bit-for-bit replay, replay misses, concurrent writers."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import respx
from structlog.testing import capture_logs

from hieramas.llm.cache import ResponseCache, cache_key
from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.errors import ReplayMissError
from hieramas.llm.types import ChatRequest, ChatResult, EndpointSpec, LLMError, ModelSpec

Body = Callable[..., dict[str, Any]]


async def test_read_write_records_then_hits(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite", "read-write")
    usage = {"prompt_tokens": 10, "completion_tokens": 4}
    async with OpenAIChatClient(cache=cache) as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, json=chat_body("recorded", usage))
            first = await client.chat(chat_request, chat_endpoint)
            second = await client.chat(chat_request, chat_endpoint)
        metrics = client.metrics()["ep"]
    assert route.call_count == 1
    assert not first.cached and second.cached
    assert dataclasses.replace(second, cached=False) == first
    assert second.cost_usd == first.cost_usd and second.prompt_tokens == 10
    assert metrics["cache_hits"] == 1 and metrics["calls"] == 2 and metrics["successes"] == 2
    assert len(cache) == 1
    cache.close()


async def test_replay_only_replays_bit_for_bit_offline(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    path = tmp_path / "run.sqlite"
    recorder = ResponseCache(path, "read-write")
    requests = [
        dataclasses.replace(chat_request, messages=[{"role": "user", "content": f"q{i}"}])
        for i in range(5)
    ]
    async with OpenAIChatClient(cache=recorder) as client:
        with respx.mock:
            respx.post(chat_url).respond(200, json=chat_body("é ✓ answer", None))
            recorded = [await client.chat(r, chat_endpoint) for r in requests]
    recorder.close()

    replayer = ResponseCache(path, "replay-only")
    async with OpenAIChatClient(cache=replayer) as client:
        with respx.mock:  # any network call would fail: no routes
            replayed = [await client.chat(r, chat_endpoint) for r in requests]
            with pytest.raises(ReplayMissError) as info:
                await client.chat(dataclasses.replace(chat_request, temperature=0.5), chat_endpoint)
        metrics = client.metrics()["ep"]
    for rec, rep in zip(recorded, replayed, strict=True):
        assert rep.cached and dataclasses.replace(rep, cached=False) == rec
        assert rep.usage_estimated  # the recorded flag is kept
    assert isinstance(info.value, LLMError) and info.value.kind == "connection"
    assert "replay-only" in str(info.value)
    assert metrics["errors"] == {"replay_miss": 1} and metrics["attempts"] == 0
    replayer.close()


async def test_off_mode_never_touches_the_file(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    cache = ResponseCache(tmp_path / "never.sqlite", "off")
    async with OpenAIChatClient(cache=cache) as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, json=chat_body())
            await client.chat(chat_request, chat_endpoint)
            await client.chat(chat_request, chat_endpoint)
    assert route.call_count == 2
    assert not (tmp_path / "never.sqlite").exists()


def test_key_covers_endpoint_model_messages_and_sampling(
    chat_request: ChatRequest, chat_endpoint: EndpointSpec, chat_model: ModelSpec
) -> None:
    base = cache_key(chat_request, chat_endpoint)
    assert base == cache_key(
        chat_request, dataclasses.replace(chat_endpoint, base_url="http://llm.test/v1/")
    )
    assert base == cache_key(chat_request, dataclasses.replace(chat_endpoint, api_key_env="K"))
    variants = [
        (chat_request, dataclasses.replace(chat_endpoint, base_url="http://other/v1")),
        (dataclasses.replace(chat_request, temperature=0.1), chat_endpoint),
        (dataclasses.replace(chat_request, max_tokens=3), chat_endpoint),
        (dataclasses.replace(chat_request, seed=1), chat_endpoint),
        (
            dataclasses.replace(
                chat_request, model=dataclasses.replace(chat_model, model_id="other")
            ),
            chat_endpoint,
        ),
        (
            dataclasses.replace(chat_request, messages=[{"role": "user", "content": "Say hi."}]),
            chat_endpoint,
        ),
    ]
    keys = {cache_key(r, e) for r, e in variants}
    assert len(keys) == len(variants) and base not in keys


def test_bad_mode_and_bad_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache mode"):
        ResponseCache(tmp_path / "x.sqlite", "write")  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        ResponseCache(tmp_path / "file" / "sub" / "c.sqlite")


def _result(i: int, writer: int) -> ChatResult:
    return ChatResult(f"answer {i} by {writer}", "m1", i, i + 1, 1e-6 * i, 0.5, 0.1)


def test_concurrent_writers_threads(
    tmp_path: Path, chat_request: ChatRequest, chat_endpoint: EndpointSpec
) -> None:
    cache = ResponseCache(tmp_path / "t.sqlite")
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for i in range(60):
                cache.put(f"k{i}", chat_request, chat_endpoint, _result(i, writer))
                got = cache.get(f"k{i}")
                assert got is not None and got.prompt_tokens == i
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) == 60
    winners = {cache.get(f"k{i}").text.split(" by ")[1] for i in range(60)}  # type: ignore[union-attr]
    assert winners <= {str(w) for w in range(6)}  # each key holds one complete recording
    cache.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from hieramas.llm.cache import ResponseCache
    from hieramas.llm.types import ChatRequest, ChatResult, EndpointSpec, ModelSpec

    path, writer = sys.argv[1], int(sys.argv[2])
    cache = ResponseCache(path)
    request = ChatRequest(ModelSpec("m1", "org/m", "ep"), [{"role": "user", "content": "x"}])
    endpoint = EndpointSpec("ep", "http://llm.test/v1")
    for i in range(150):
        result = ChatResult(f"answer {i} by {writer}", "m1", i, i + 1, 0.0, 0.5)
        cache.put(f"k{i % 100}-{writer % 2}", request, endpoint, result)
        assert cache.get(f"k{i % 100}-{writer % 2}") is not None
    print("done", writer)
    """
)


@pytest.mark.slow
def test_concurrent_writers_processes(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("done")
    cache = ResponseCache(path, "replay-only")
    assert len(cache) == 200
    for i in range(100):
        for parity in (0, 1):
            got = cache.get(f"k{i}-{parity}")
            assert got is not None and got.cached and got.prompt_tokens == i
    cache.close()


async def test_concurrent_identical_calls_share_one_recording(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    cache = ResponseCache(tmp_path / "a.sqlite")
    async with OpenAIChatClient(cache=cache) as client:
        with respx.mock:
            respx.post(chat_url).respond(200, json=chat_body("same"))
            results = await asyncio.gather(
                *(client.chat(chat_request, chat_endpoint) for _ in range(8))
            )
    assert {r.text for r in results} == {"same"}
    assert len(cache) == 1
    cache.close()


def _corrupt(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)


async def test_broken_cache_file_degrades_or_fails_clearly(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    path = tmp_path / "broken.sqlite"
    writer = ResponseCache(path, "read-write")
    replayer = ResponseCache(path, "replay-only")
    writer.close()
    replayer.close()  # reconnects lazily, on the worker threads
    _corrupt(path)
    with respx.mock, capture_logs() as logs:
        respx.post(chat_url).respond(200, json=chat_body("still works"))
        async with OpenAIChatClient(cache=writer) as client:
            result = await client.chat(chat_request, chat_endpoint)
        async with OpenAIChatClient(cache=replayer) as client:
            with pytest.raises(ReplayMissError, match="unreadable"):
                await client.chat(chat_request, chat_endpoint)
    assert result.text == "still works" and not result.cached
    assert {e["op"] for e in logs if e["event"] == "llm_cache_error"} == {"get", "put"}


def test_many_connections_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL takes an exclusive lock for which SQLite skips its busy
    handler, so some of these opens used to fail at once with "database is locked"."""
    failures: list[BaseException] = []
    for round_ in range(150):
        path = tmp_path / f"c{round_}.sqlite"
        start = threading.Barrier(16)

        def open_cache(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                ResponseCache(path)
            except sqlite3.OperationalError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_cache) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    mode = sqlite3.connect(tmp_path / "c0.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
