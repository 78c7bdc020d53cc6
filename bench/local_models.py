"""Tokens/s of the real local models on this machine (llama.cpp server, greedy decoding).

    .venv/bin/python bench/local_models.py                  # small models (0.5b, 135m)
    .venv/bin/python bench/local_models.py --models all     # + Qwen2.5-Coder-1.5B (slow)

For each model, one server (``--threads`` threads) is started; after a warm-up, each repeat
sends (1) a fresh prompt (unique first line, so llama.cpp cannot reuse a cached prefix beyond
the chat template) with ``max_tokens=1``: its latency is the time to first token (TTFT);
(2) the same prompt again with ``max_tokens=1`` (prefix now cached: overhead only) and
(3) with ``max_tokens=N``.  Decode tok/s = (completion_tokens - 1) / (t3 - t2).  Token counts
are the server's real ``usage``.  The ratio column is decode tok/s relative to SmolLM2-135M
measured in the same run (the baseline), when it is part of the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import httpx

from hieramas.llm.local import resolve_models, running_local_server

PROMPT = (
    "Write a Python function `is_prime(n: int) -> bool` with a docstring, then a second "
    "function that returns the first k primes. Explain the complexity briefly."
)


def _call(
    client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int
) -> tuple[float, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "seed": 1,
    }
    start = time.perf_counter()
    resp = client.post(f"{url}/chat/completions", json=body)
    elapsed = time.perf_counter() - start
    resp.raise_for_status()
    return elapsed, resp.json()["usage"]


def bench_model(key: str, threads: int, max_tokens: int, repeats: int) -> dict[str, float]:
    """Measure one model in its own server; return median figures."""
    model = resolve_models(key)[0]
    t0 = time.perf_counter()
    with running_local_server([key], n_threads=threads, n_ctx=2048) as url:
        startup = time.perf_counter() - t0
        with httpx.Client(timeout=600) as client:
            _call(client, url, model.alias, "warm-up\n" + PROMPT, 8)
            decode, ttft, prompt_tokens, completion = [], [], [], []
            for i in range(repeats):
                prompt = f"Request {i} of a benchmark.\n{PROMPT}"
                t_first, u_first = _call(client, url, model.alias, prompt, 1)
                t_1, _ = _call(client, url, model.alias, prompt, 1)
                t_n, u_n = _call(client, url, model.alias, prompt, max_tokens)
                n = u_n["completion_tokens"]
                decode.append((n - 1) / max(t_n - t_1, 1e-9))
                ttft.append(t_first)
                prompt_tokens.append(u_first["prompt_tokens"])
                completion.append(n)
    return {
        "startup_s": startup,
        "decode_tps": statistics.median(decode),
        "ttft_s": statistics.median(ttft),
        "prompt_tokens": statistics.median(prompt_tokens),
        "completion_tokens": statistics.median(completion),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="small", help="keys/aliases, 'small' or 'all'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results = {}
    for model in resolve_models(args.models):
        results[model.key] = bench_model(model.key, args.threads, args.max_tokens, args.repeats)
        print(f"measured {model.alias}", flush=True)
    base = results.get("135m", {}).get("decode_tps")
    print(
        f"\nthreads={args.threads} max_tokens={args.max_tokens} repeats={args.repeats} "
        "(median; real llama.cpp, not emulated); "
        f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"on {os.cpu_count()} CPUs; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}"
    )
    header = (
        f"{'model':<22}{'decode tok/s':>13}{'TTFT s':>8}{'prompt tok':>11}"
        f"{'out tok':>8}{'startup s':>11}{'vs 135m':>9}"
    )
    print(header)
    for key, r in results.items():
        ratio = f"{r['decode_tps'] / base:.2f}x" if base else "-"
        print(
            f"{resolve_models(key)[0].alias:<22}{r['decode_tps']:>13.1f}{r['ttft_s']:>8.2f}"
            f"{r['prompt_tokens']:>11.0f}{r['completion_tokens']:>8.0f}{r['startup_s']:>11.2f}"
            f"{ratio:>9}"
        )


if __name__ == "__main__":
    main()
