"""Loop time per query of planning: static planning inline, 5 ms planners off the loop.

The gateway plans every query on the process's one asyncio loop, the loop that
also carries every NATS message.  A planner that says it is heavy (a learned
policy: an embedding, a torch forward pass) is called in a thread pool, so the
loop only hands the work over and takes the answer back.  This measures, on
the real gateway of an embedded stack (real nats-server, JetStream config
store, the 8-supernode x 3-proposer config of ``bench/overhead.py``):

* **loop CPU per planned query**: CPU time of the loop thread
  (``time.thread_time`` read on it) over the gateway's planning step (validate
  the query, read the config, plan, freeze the plan), per query, one at a time
  and 16 at once;
* **worst loop lag while planning**: how late a 1 ms ticker on the loop wakes
  up while queries are planned 16 at once (a blocked loop shows here);
* **whole lone queries** through the stack and the scripted instant LLM
  server: loop CPU and latency p50 per query.

A loop that idles 5 ms between two pieces of work finds its caches cold (other
processes ran meanwhile) and spends more CPU on the same work, so a control row
plans statically with the loop idle 5 ms before each query: the rest of an
off-loop planner's figure is the hand-off to the thread pool and back.

Planners: ``static`` (inline); ``sleep 5 ms`` and ``torch 5 ms`` (a 5 ms
sleep / ~5 ms of single-threaded torch matmuls, then the static assignment),
off the loop; and, for contrast, ``sleep 5 ms`` left on the loop.

    python bench/planning.py [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from overhead import config_text, run_queries, start_llm_server

from hieramas.controller.client import HieraClient
from hieramas.controller.config import HieraConfig, PlannerConfig
from hieramas.controller.gateway import Gateway
from hieramas.controller.planner import Assignment, PlanRequest, StaticPlanner
from hieramas.controller.planners import register_planner
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind, new_id


class WorkPlanner(StaticPlanner):
    """The static assignment after ``work()`` (a sleep or a computation)."""

    def __init__(self, kind: str, work: Callable[[], None], *, heavy: bool) -> None:
        self.kind = kind
        self.heavy = heavy
        self._work = work

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        self._work()
        return super().assign(config, request)


def torch_work(target_s: float = 0.005) -> tuple[Callable[[], None], float]:
    """A single-threaded torch computation of about ``target_s`` of CPU, and its median
    (CPU time, which other processes on the machine do not inflate)."""
    import torch

    torch.set_num_threads(1)  # the loop keeps the other core
    a = torch.randn(192, 192)
    reps = 1

    def work() -> None:
        x = a
        for _ in range(reps):
            x = torch.tanh(x @ a)

    def median_s() -> float:
        times = []
        for _ in range(21):
            started = time.thread_time()
            work()
            times.append(time.thread_time() - started)
        return statistics.median(times)

    for _ in range(4):  # converge: the machine's speed moves under load
        reps = max(1, round(reps * target_s / median_s()))
    return work, median_s()


def _query(text: str) -> Envelope:
    return Envelope(kind=Kind.QUERY, payload={"text": text}, query_id=new_id(), trace_id=new_id())


async def plan_loop_cpu(gateway: Gateway, n: int, at_once: int, gap_s: float = 0.0) -> float:
    """Loop-thread CPU seconds per query of the gateway's planning step (each query after
    ``gap_s`` of idling)."""
    gate = asyncio.Semaphore(at_once)

    async def one(i: int) -> None:
        async with gate:
            if gap_s:
                await asyncio.sleep(gap_s)
            envelope = _query(f"bench question {i}")
            await gateway._plan(envelope, envelope.query_id)

    started = time.thread_time()  # this coroutine runs on the loop thread
    await asyncio.gather(*(one(i) for i in range(n)))
    return (time.thread_time() - started) / n


async def worst_lag(gateway: Gateway, n: int, at_once: int) -> float:
    """The latest a 1 ms ticker on the loop woke up while ``n`` queries were planned."""
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - due)

    task = asyncio.get_running_loop().create_task(ticker())
    await plan_loop_cpu(gateway, n, at_once)
    running = False
    await task
    return max(lags)


async def lone_queries(client: HieraClient, n: int) -> tuple[float, float]:
    """Loop CPU seconds and latency p50 (s) per whole lone query."""
    started = time.thread_time()
    results, _ = await run_queries(client, n, 1)
    cpu = (time.thread_time() - started) / n
    bad = [r for r in results if r["status"] != "ok"]
    assert not bad, bad[:1]
    return cpu, statistics.median(r["latency_s"] for r in results)


def measure(url: str, kind: str, queries: int, gap_s: float = 0.0) -> dict[str, Any]:
    with Stack(workers=1, planner=PlannerConfig(kind=kind)) as stack:
        assert stack.bus is not None and stack.controller is not None
        gateway = stack.controller.gateway
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text(url)), 30)
        stack.bus.call(run_queries(client, 20, 4), 120)  # warm-up
        alone = stack.bus.call(plan_loop_cpu(gateway, queries, 1, gap_s), 600)
        sixteen = stack.bus.call(plan_loop_cpu(gateway, queries, 16, gap_s), 600)
        lag = stack.bus.call(worst_lag(gateway, queries, 16), 600)
        cpu, p50 = stack.bus.call(lone_queries(client, queries), 600)
    return {"alone": alone, "sixteen": sixteen, "lag": lag, "query_cpu": cpu, "p50": p50}


def main() -> None:
    parser = argparse.ArgumentParser(description="HieraMAS planning: loop time per query")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    work, took = torch_work()
    planners = {
        "static": StaticPlanner,
        "bench-sleep-off": lambda: WorkPlanner("sleep", lambda: time.sleep(0.005), heavy=True),
        "bench-torch-off": lambda: WorkPlanner("torch", work, heavy=True),
        "bench-sleep-on": lambda: WorkPlanner("sleep", lambda: time.sleep(0.005), heavy=False),
    }
    labels = {
        "static": "static, inline",
        "static-gap": "static, inline, 5 ms idle before",
        "bench-sleep-off": "sleep 5 ms, off the loop",
        "bench-torch-off": f"torch {1000 * took:.1f} ms, off the loop",
        "bench-sleep-on": "sleep 5 ms, ON the loop",
    }
    for kind, factory in planners.items():
        register_planner(kind, lambda spec, f=factory: f())  # type: ignore[misc]
    proc, url = start_llm_server(0.0)
    rows = []
    try:
        for kind in planners:
            rows.append((labels[kind], measure(url, kind, args.queries)))
            if kind == "static":  # the cost of the idle gap alone: caches go cold meanwhile
                rows.append((labels["static-gap"], measure(url, kind, args.queries, 0.005)))
    finally:
        proc.terminate()
        proc.wait(10)
    print("8 supernodes x 3 proposers, scripted instant LLM server; loop = the gateway's loop")
    print(
        f"{'planner':34} {'loop CPU/plan':>14} {'16 at once':>11} {'worst lag':>10} "
        f"{'loop CPU/query':>15} {'p50 query':>10}"
    )
    for label, r in rows:
        print(
            f"{label:34} {1e6 * r['alone']:11.0f} µs {1e6 * r['sixteen']:8.0f} µs "
            f"{1e3 * r['lag']:7.2f} ms {1e3 * r['query_cpu']:12.2f} ms {1e3 * r['p50']:7.2f} ms"
        )


if __name__ == "__main__":
    main()
