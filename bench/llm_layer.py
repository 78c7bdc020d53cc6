"""Overhead of the LLM client per call, and sustained requests/s against the emulator.

    .venv/bin/python bench/llm_layer.py                     # both sections
    .venv/bin/python bench/llm_layer.py --calls 3000 --no-emulator

1. *Client overhead.*  An instant OpenAI-compatible server (``hieramas.llm.loopback``)
   runs in its own process on loopback.  In the same run, sequential calls are
   timed two ways, interleaved in blocks so drift hits both equally: a raw
   ``httpx.AsyncClient.post`` + ``response.json()`` (the baseline) and
   ``OpenAIChatClient.chat`` (retries, breaker, semaphore, deadline, accounting).
   The difference of the medians is the client's overhead per call (target < 1 ms).
   A read-write cache hit is timed too.  The same comparison over an in-memory
   ``httpx.MockTransport`` isolates the client's own CPU cost from network noise.
2. *Throughput.*  ``--concurrency`` callers send calls for ``--seconds`` through
   ``OpenAIChatClient`` and, for a baseline, through raw httpx with the same pool
   size, for each ``--pools`` value (``EndpointSpec.max_concurrency``): first to
   the instant loopback server (the client side's ceiling), then to the emulator
   (``hieramas emulator serve --latency-scale 0``, own process; figures are
   emulated; target >= 500 req/s).  httpx/httpcore's pool gets slower as it
   grows (encode/httpx#3215), so the sweep shows which pool size suits an
   instant server.
3. *HTTP paths.*  Client CPU per call (``time.process_time``) of four ways to send
   the same request, interleaved in rounds of 300 concurrent calls:
   ``httpx.AsyncClient.send`` over the aiohttp transport (cookies, redirects, auth
   and default merging), an ``httpx.Request`` handed straight to the aiohttp
   transport and to :class:`~hieramas.llm.h1_transport.H1Transport` (what
   ``OpenAIChatClient`` does; H1Transport is the default for ``http://``), and raw
   aiohttp without httpx's objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer

from hieramas.llm import (
    ChatRequest,
    EndpointSpec,
    ModelSpec,
    OpenAIChatClient,
    ResponseCache,
)
from hieramas.natsserver import free_port

QUESTION = "What is the capital of France? Answer with one word."


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(name: str, samples_s: list[float]) -> str:
    ms = [s * 1000 for s in samples_s]
    return (
        f"  {name:<28} p50 {_pct(ms, 0.5):7.3f} ms   p99 {_pct(ms, 0.99):7.3f} ms"
        f"   mean {statistics.fmean(ms):7.3f} ms   (n={len(ms)})"
    )


async def _time(call: Callable[[], Awaitable[object]], n: int, out: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)


async def _in_process(calls: int, block: int) -> None:
    """The client's own CPU cost: both paths over the same in-memory transport."""
    reply = json.dumps(
        {
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1},
        }
    ).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=reply))
    model = ModelSpec("bench", "bench-model", "mem", price_in_per_m=0.1, price_out_per_m=0.4)
    request = ChatRequest(model, [{"role": "user", "content": QUESTION}])
    endpoint = EndpointSpec("mem", "http://in-memory/v1")
    payload = json.dumps(
        {"model": "bench-model", "messages": request.messages, "temperature": 0.0}
    ).encode()
    raw_http = httpx.AsyncClient(transport=transport)
    client = OpenAIChatClient(transport=transport)

    async def raw() -> object:
        response = await raw_http.post(
            "http://in-memory/v1/chat/completions",
            content=payload,
            headers={"Content-Type": "application/json"},
        )
        return response.json()["choices"][0]["message"]["content"]

    async def ours() -> object:
        return await client.chat(request, endpoint, deadline=time.monotonic() + 30)

    for fn in (raw, ours):
        await _time(fn, 300, [])
    raw_s: list[float] = []
    ours_s: list[float] = []
    for i in range(max(1, calls // block)):
        order = [(raw, raw_s), (ours, ours_s)]
        for fn, out in order if i % 2 == 0 else reversed(order):
            await _time(fn, block, out)
    await client.aclose()
    await raw_http.aclose()
    print("Client CPU cost per call, in-process (httpx.MockTransport, no network)")
    print(_row("raw httpx post + json", raw_s))
    print(_row("OpenAIChatClient.chat", ours_s))
    d50 = (_pct(ours_s, 0.5) - _pct(raw_s, 0.5)) * 1000
    print(f"  overhead: p50 {d50:+.3f} ms  (target < 1 ms)")


async def _overhead(base_url: str, calls: int, block: int) -> None:
    model = ModelSpec("bench", "bench-model", "loop", price_in_per_m=0.1, price_out_per_m=0.4)
    request = ChatRequest(model, [{"role": "user", "content": QUESTION}])
    endpoint = EndpointSpec("loop", base_url, max_concurrency=4)
    url = f"{base_url}/chat/completions"
    payload = json.dumps(
        {"model": "bench-model", "messages": request.messages, "temperature": 0.0}
    ).encode()

    raw_http = httpx.AsyncClient(limits=httpx.Limits(max_connections=4))

    async def raw() -> object:
        response = await raw_http.post(
            url, content=payload, headers={"Content-Type": "application/json"}
        )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    client = OpenAIChatClient({"loop": endpoint})

    async def ours() -> object:
        return await client.chat(request, endpoint, deadline=time.monotonic() + 30)

    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(Path(tmp) / "bench.sqlite", "read-write")
        cached_client = OpenAIChatClient({"loop": endpoint}, cache=cache)

        async def hit() -> object:
            return await cached_client.chat(request, endpoint)

        for fn in (raw, ours, hit):  # warm-up: connections, caches, JIT-free but lazy imports
            await _time(fn, 200, [])
        raw_s: list[float] = []
        ours_s: list[float] = []
        hit_s: list[float] = []
        for i in range(max(1, calls // block)):
            order = [(raw, raw_s), (ours, ours_s)]
            for fn, out in order if i % 2 == 0 else reversed(order):
                await _time(fn, block, out)
            await _time(hit, block // 4 or 1, hit_s)
        await cached_client.aclose()
        cache.close()
    await client.aclose()
    await raw_http.aclose()

    print("Client overhead per call, sequential calls to an instant loopback server")
    print(_row("raw httpx post + json", raw_s))
    print(_row("OpenAIChatClient.chat", ours_s))
    print(_row("OpenAIChatClient cache hit", hit_s))
    d50 = (_pct(ours_s, 0.5) - _pct(raw_s, 0.5)) * 1000
    d99 = (_pct(ours_s, 0.99) - _pct(raw_s, 0.99)) * 1000
    dmean = (statistics.fmean(ours_s) - statistics.fmean(raw_s)) * 1000
    ratio = _pct(ours_s, 0.5) / _pct(raw_s, 0.5)
    print(
        f"  overhead: p50 {d50:+.3f} ms, p99 {d99:+.3f} ms, mean {dmean:+.3f} ms"
        f"  (p50 ratio {ratio:.2f}x raw; target < 1 ms)"
    )


def _emulator_command(port: int) -> list[str] | None:
    """``hieramas emulator serve ...`` if registered, else ``python -m hieramas.emulator serve``."""
    args = ["serve", "--port", str(port), "--latency-scale", "0"]
    exe = shutil.which("hieramas", path=str(Path(sys.executable).parent))
    candidates = [[exe, "emulator"]] if exe else []
    candidates.append([sys.executable, "-m", "hieramas.emulator"])
    for prefix in candidates:
        probe = subprocess.run([*prefix, "serve", "--help"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [*prefix, *args]
    return None


async def _drive(call: Callable[[int], Awaitable[object]], callers: int, duration: float) -> float:
    """Requests/s sustained by ``callers`` concurrent loops of ``call`` for ``duration`` s."""
    done = 0
    stop_at = time.perf_counter() + duration

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            await call(w * 1_000_000 + i)
            i += 1
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(callers)))
    return done / (time.perf_counter() - t0)


async def _rates(
    base_url: str, model_id: str, seconds: float, callers: int, pool: int
) -> tuple[float, float, object]:
    """(client req/s, raw httpx req/s, client errors) for one pool size."""
    messages = [{"role": "user", "content": QUESTION}]
    endpoint = EndpointSpec(f"p{pool}", base_url, max_concurrency=pool)
    model = ModelSpec(model_id, model_id, endpoint.name)
    client = OpenAIChatClient()

    async def ours(seed: int) -> object:
        request = ChatRequest(model, messages, seed=seed)
        return await client.chat(request, endpoint, deadline=time.monotonic() + 30)

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    raw_http = httpx.AsyncClient(limits=limits, timeout=30)

    async def raw(seed: int) -> object:
        body = {"model": model_id, "messages": messages, "temperature": 0.0, "seed": seed}
        response = await raw_http.post(f"{base_url}/chat/completions", json=body)
        response.raise_for_status()
        return response.json()

    await _drive(ours, callers, min(1.0, seconds))  # warm-up
    rate_ours = await _drive(ours, callers, seconds)
    rate_raw = await _drive(raw, callers, seconds)
    errors = client.metrics()[endpoint.name]["errors"]
    await client.aclose()
    await raw_http.aclose()
    return rate_ours, rate_raw, errors


async def _throughput(
    base_url: str, model_id: str, seconds: float, callers: int, pools: list[int], label: str
) -> None:
    """Client vs raw httpx, ``callers`` concurrent callers, for each pool size in ``pools``."""
    print(f"{label}: model {model_id!r}, {callers} concurrent callers, {seconds:g} s per run")
    for pool in pools:
        ours, raw, errors = await _rates(base_url, model_id, seconds, callers, pool)
        print(
            f"  pool {pool:>3}: OpenAIChatClient {ours:7.1f} req/s (errors {errors}),"
            f" raw httpx {raw:7.1f} req/s, ratio {ours / raw:.2f}"
        )


async def _paths(base_url: str, rounds: int) -> None:
    import aiohttp

    from hieramas.llm.aiohttp_transport import BufferedAiohttpTransport
    from hieramas.llm.h1_transport import H1Transport

    url = f"{base_url}/chat/completions"
    body = json.dumps(
        {"model": "bench-model", "messages": [{"role": "user", "content": QUESTION * 20}]}
    ).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    client = httpx.AsyncClient(
        headers=headers, limits=limits, transport=BufferedAiohttpTransport(limits)
    )
    transport = BufferedAiohttpTransport(limits)
    lean = H1Transport(limits, httpx.Timeout(30))
    parsed, prepared = httpx.URL(url), httpx.Headers(headers)
    extensions = {"timeout": httpx.Timeout(30).as_dict()}
    session = aiohttp.ClientSession()

    async def via_client() -> None:
        response = await client.send(client.build_request("POST", url, content=body), stream=True)
        await response.aread()
        await response.aclose()
        json.loads(response.content)

    async def via(chosen: httpx.AsyncBaseTransport) -> None:
        request = httpx.Request(
            "POST", parsed, headers=prepared, content=body, extensions=extensions
        )
        response = await chosen.handle_async_request(request)
        response.request = request
        await response.aread()
        await response.aclose()
        json.loads(response.content)

    async def via_transport() -> None:
        await via(transport)

    async def via_lean() -> None:
        await via(lean)

    async def via_aiohttp() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            json.loads(await response.read())

    paths = {
        "httpx.AsyncClient.send (aiohttp transport)": via_client,
        "httpx.Request -> aiohttp transport": via_transport,
        "httpx.Request -> H1Transport (http:// default)": via_lean,
        "raw aiohttp, no httpx objects": via_aiohttp,
    }
    cpu_ms: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for call in paths.values():  # warm the pools
            await asyncio.gather(*(call() for _ in range(50)))
        for _ in range(rounds):
            for name, call in paths.items():
                before = time.process_time()
                await asyncio.gather(*(call() for _ in range(300)))
                cpu_ms[name].append((time.process_time() - before) / 300 * 1000)
    finally:
        await client.aclose()
        await transport.aclose()
        await lean.aclose()
        await session.close()
    print(f"\nHTTP paths, client CPU per call (median of {rounds} rounds of 300 concurrent calls):")
    base = statistics.median(cpu_ms[next(iter(paths))])
    for name, samples in cpu_ms.items():
        median = statistics.median(samples)
        print(f"  {name:48s} {median:6.3f} ms  ({median / base:.2f}x)")


def main(
    calls: Annotated[int, typer.Option(help="Timed calls per variant (overhead).")] = 2000,
    block: Annotated[int, typer.Option(help="Calls per interleaved block.")] = 25,
    emulator: Annotated[bool, typer.Option(help="Also measure the emulator.")] = True,
    seconds: Annotated[float, typer.Option(help="Seconds per throughput run.")] = 5.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent callers (throughput).")] = 32,
    pools: Annotated[
        str, typer.Option(help="Comma-separated max_concurrency (pool sizes) to sweep.")
    ] = "2,8,32",
    path_rounds: Annotated[
        int, typer.Option(help="Rounds of the HTTP-path comparison (0 skips it).")
    ] = 6,
) -> None:
    """Run the LLM-layer benchmarks and print figures."""
    pool_sizes = [int(p) for p in pools.split(",") if p.strip()]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"python {sys.version.split()[0]}, httpx {httpx.__version__}, {os.cpu_count()} cpus,"
        f" load average {load}"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hieramas.llm.loopback", "--port", str(port)],
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/", server)
        asyncio.run(_overhead(f"http://127.0.0.1:{port}/v1", calls, block))
        asyncio.run(_in_process(calls, block))
        if path_rounds > 0:
            asyncio.run(_paths(f"http://127.0.0.1:{port}/v1", path_rounds))
        asyncio.run(
            _throughput(
                f"http://127.0.0.1:{port}/v1",
                "bench-model",
                seconds,
                concurrency,
                pool_sizes,
                "Instant loopback server (client-side ceiling)",
            )
        )
    finally:
        _stop(server)
    if not emulator:
        return
    port = free_port()
    command = _emulator_command(port)
    if command is None:
        print("Emulator: `hieramas emulator serve` is not available; skipped.")
        return
    shown = [Path(command[0]).name, *command[1:]]
    print(f"Emulator started as: {' '.join(shown)}")
    emu = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", emu)
        base_url = f"http://127.0.0.1:{port}/v1"
        model_id = str(httpx.get(f"{base_url}/models", timeout=10).json()["data"][0]["id"])
        label = "Emulator (emulated), --latency-scale 0, target >= 500 req/s"
        asyncio.run(_throughput(base_url, model_id, seconds, concurrency, pool_sizes, label))
    finally:
        _stop(emu)


if __name__ == "__main__":
    typer.run(main)
