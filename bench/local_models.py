"""Tokens/s of the real local models on this machine (llama.cpp server, greedy decoding).

    .venv/bin/python bench/local_models.py                  # small models (0.5b, 135m)
    .venv/bin/python bench/local_models.py --models all     # + Qwen2.5-Coder-1.5B (slow)

For each model, one server (``--threads`` threads) is started; after a warm-up, each repeat
sends the same coding prompt twice: with ``max_tokens=1`` (prompt eval + overhead) and with
``max_tokens=N``.  Decode tok/s = (completion_tokens - 1) / (t_N - t_1); end-to-end tok/s =
completion_tokens / t_N; prompt tok/s = prompt_tokens / t_1.  Token counts are the server's
real ``usage``.  The ratio column is decode tok/s relative to SmolLM2-135M measured in the
same run (the baseline), when it is part of the run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from hieramas.llm.local import resolve_models, running_local_server

PROMPT = (
    "Write a Python function `is_prime(n: int) -> bool` with a docstring, then a second "
    "function that returns the first k primes. Explain the complexity briefly."
)


def _call(client: httpx.Client, url: str, model: str, max_tokens: int) -> tuple[float, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
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
            _call(client, url, model.alias, 8)  # warm-up
            decode, e2e, prompt, completion = [], [], [], []
            for _ in range(repeats):
                t1, u1 = _call(client, url, model.alias, 1)
                tn, un = _call(client, url, model.alias, max_tokens)
                n = un["completion_tokens"]
                decode.append((n - 1) / max(tn - t1, 1e-9))
                e2e.append(n / tn)
                prompt.append(u1["prompt_tokens"] / t1)
                completion.append(n)
    return {
        "startup_s": startup,
        "decode_tps": statistics.median(decode),
        "e2e_tps": statistics.median(e2e),
        "prompt_tps": statistics.median(prompt),
        "completion_tokens": statistics.median(completion),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="small", help="keys/aliases, 'small' or 'all'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results = {}
    for model in resolve_models(args.models):
        results[model.key] = bench_model(model.key, args.threads, args.max_tokens, args.repeats)
        print(f"measured {model.alias}", flush=True)
    base = results.get("135m", {}).get("decode_tps")
    print(
        f"\nthreads={args.threads} max_tokens={args.max_tokens} repeats={args.repeats} "
        "(median; real llama.cpp, not emulated)"
    )
    header = (
        f"{'model':<22}{'decode tok/s':>13}{'e2e tok/s':>11}{'prompt tok/s':>14}"
        f"{'tokens':>8}{'startup s':>11}{'vs 135m':>9}"
    )
    print(header)
    for key, r in results.items():
        ratio = f"{r['decode_tps'] / base:.2f}x" if base else "-"
        print(
            f"{resolve_models(key)[0].alias:<22}{r['decode_tps']:>13.1f}{r['e2e_tps']:>11.1f}"
            f"{r['prompt_tps']:>14.1f}{r['completion_tokens']:>8.0f}{r['startup_s']:>11.2f}"
            f"{ratio:>9}"
        )


if __name__ == "__main__":
    main()
