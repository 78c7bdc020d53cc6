"""Throughput of the emulator (latency scale 0) against a trivial scripted server.

Both servers run as subprocesses (``python -m hieramas.emulator serve`` and
``python -m hieramas.llm.loopback``); one client process drives each with the
same request count and concurrency.  The emulator's requests are real
HieraMAS prompts (proposers, synthesizers with proposals, decision nodes and
unknown prompts) over MMLU-Redux, MATH-500, GSM8K and HumanEval items and all
models of the pool; the baseline gets the same bodies.  Figures are for the
*emulated* pool.

    .venv/bin/python bench/emulator_throughput.py [--requests 4000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from hieramas.natsserver import free_port
from hieramas.tasks import prompts
from hieramas.tasks.datasets import load


def _bodies(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    models = ["qwen3-8b", "qwen3-80b", "llama-8b", "deepseek-v3", "gemma-3-27b", "gpt-5-nano",
              "gpt-5-mini", "gpt-4o-mini"]  # fmt: skip
    pools = {
        "mmlu": load("mmlu_redux")[:400],
        "math": load("math500")[:200],
        "gsm8k": load("gsm8k")[:200],
        "humaneval": load("humaneval")[:40],
    }
    bodies: list[bytes] = []
    for _ in range(n):
        domain = rng.choice(list(pools))
        item = rng.choice(pools[domain])
        role = rng.choice(prompts.roles(domain))
        r = rng.random()
        if r < 0.5:
            msgs = prompts.proposer_messages(domain, role, item.question, [])
        elif r < 0.75:
            proposal = f"Some reasoning.\n\nThe answer is ({rng.choice('ABCD')})."
            msgs = prompts.synthesizer_messages(domain, role, item.question, [proposal] * 3, [])
        elif r < 0.9:
            msgs = prompts.decision_messages(domain, item.question, [(role, "The answer is (A).")])
        else:
            msgs = [{"role": "user", "content": f"Tell me something interesting #{rng.random()}"}]
        body = {"model": rng.choice(models), "messages": msgs, "seed": rng.randrange(4)}
        bodies.append(json.dumps(body).encode())
    return bodies


def _start(args: list[str], port: int, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server {args} did not start")


async def _connection(
    port: int, requests: list[bytes], latencies: list[float], statuses: list[int]
) -> None:
    """One keep-alive HTTP/1.1 connection sending its requests back to back.

    A raw asyncio client: httpx's async pool tops out near 160 req/s on this
    machine, far below the servers, so it would measure itself.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in requests:
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in lines
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses.append(int(lines[0].split()[1]))
    finally:
        writer.close()


def _http(body: bytes) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _drive(port: int, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    reqs = [_http(b) for b in bodies]
    # warm-up: one request per distinct body prefix (first use of an item computes its wrong
    # answers once; HumanEval items verify their buggy variants in the sandbox once)
    await _connection(port, reqs, [], [])
    latencies: list[float] = []
    statuses: list[int] = []
    shards = [reqs[i::concurrency] for i in range(concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, s, latencies, statuses) for s in shards))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(bodies),
        "errors": sum(1 for s in statuses if s != 200),
        "req_per_s": len(bodies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bodies = _bodies(args.requests, args.seed)
    results: dict[str, dict[str, Any]] = {}
    runs = [
        ("loopback (baseline)", ["hieramas.llm.loopback"]),
        ("emulator, h11", ["hieramas.emulator", "serve", "--latency-scale", "0", "--http", "h11"]),
    ]
    if importlib.util.find_spec("httptools") is not None:
        runs.append(
            ("emulator, httptools",
             ["hieramas.emulator", "serve", "--latency-scale", "0", "--http", "httptools"])
        )  # fmt: skip
    for name, cmd in runs:
        port = free_port()
        proc = _start([*cmd, "--port", str(port)], port)
        try:
            results[name] = asyncio.run(_drive(port, bodies, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"emulated pool, {args.requests} requests, concurrency {args.concurrency}, latency 0")
    for name, r in results.items():
        print(
            f"  {name:22s} {r['req_per_s']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms"
            f"   p99 {r['p99_ms']:6.2f} ms   errors {r['errors']}"
        )
    base = results["loopback (baseline)"]["req_per_s"]
    for name, r in results.items():
        if name.startswith("emulator"):
            print(f"  {name} / baseline throughput ratio: {r['req_per_s'] / base:.2f}")
    print(f"  1-min load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
