"""Queries per second and CPU per query at CPython's default young-generation GC threshold
(700) against the one a started stack sets (``hieramas.stack.YOUNG_GC_THRESHOLD``),
alternated in one process.

The stack of ``bench/overhead.py`` (8 supernodes x 3 proposers, real nats-server, one worker)
with the instant in-process LLM of ``bench/peers.py``'s "orchestration alone", ``--inflight``
queries at a time.  Each round runs ``--queries`` at each threshold, the order alternating
between rounds; it prints each run, the young collections per query and the ratios.

    python bench/gc_threshold.py [--rounds 3] [--queries 2000] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time

from overhead import InstantClient, config_text

import hieramas.stack
from hieramas.controller.client import HieraClient
from hieramas.stack import YOUNG_GC_THRESHOLD, Stack

DEFAULT_THRESHOLD = 700


async def _measure(
    client: HieraClient, queries: int, inflight: int, tag: str
) -> tuple[float, float, int]:
    """(queries/s, CPU ms per query, young collections) for ``queries`` at ``inflight``."""
    gate = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with gate:
            result = await client.ask(f"{tag} {i}", timeout_s=60)
            assert result["status"] == "ok", result

    collections = gc.get_stats()[0]["collections"]
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(queries)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return queries / wall, 1000 * cpu / queries, gc.get_stats()[0]["collections"] - collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    hieramas.stack.OpenAIChatClient = lambda **_: InstantClient()  # type: ignore[assignment,misc]
    figures: dict[int, list[tuple[float, float]]] = {DEFAULT_THRESHOLD: [], YOUNG_GC_THRESHOLD: []}
    with Stack(workers=1) as stack:
        assert stack.bus is not None
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text("http://127.0.0.1:1")), 30)

        async def run() -> None:
            for i in range(50):
                await client.ask(f"warm-up {i}", timeout_s=60)
            _, middle, old = gc.get_threshold()
            for n in range(args.rounds):
                order = [DEFAULT_THRESHOLD, YOUNG_GC_THRESHOLD]
                for threshold in order if n % 2 == 0 else order[::-1]:
                    gc.set_threshold(threshold, middle, old)
                    qps, cpu_ms, young = await _measure(
                        client, args.queries, args.inflight, f"r{n} t{threshold}"
                    )
                    figures[threshold].append((qps, cpu_ms))
                    print(
                        f"round {n + 1} threshold {threshold:6d}: {qps:6.1f} q/s, "
                        f"{cpu_ms:.3f} CPU ms/query, {young / args.queries:.3f} young "
                        f"collections/query (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )

        stack.bus.call(run(), 3600)
    base, ours = figures[DEFAULT_THRESHOLD], figures[YOUNG_GC_THRESHOLD]
    qps = [o[0] / b[0] for b, o in zip(base, ours, strict=True)]
    cpu = [o[1] / b[1] for b, o in zip(base, ours, strict=True)]
    print(
        f"threshold {YOUNG_GC_THRESHOLD} / {DEFAULT_THRESHOLD}, same round: "
        f"q/s x{min(qps):.2f}-{max(qps):.2f} (median x{statistics.median(qps):.2f}), "
        f"CPU x{min(cpu):.2f}-{max(cpu):.2f} (median x{statistics.median(cpu):.2f})"
    )


if __name__ == "__main__":
    main()
