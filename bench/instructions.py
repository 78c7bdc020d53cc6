"""CPU instructions per lone query of the runtime process, counted by valgrind.

Wall-clock figures on a shared VM swing by ±30% from hour to hour, so a change
worth 2% of CPU cannot be seen in ``bench/overhead.py``.  An instruction count
can: callgrind counts instructions, not seconds, and gives the same total for
the same work whatever else the machine is doing (about 1% apart here).

It runs the stack of ``bench/overhead.py`` (8 supernodes x 3 proposers, real
nats-server, the scripted instant LLM server) in a child process under
``valgrind --tool=callgrind``, twice: with ``--warmup`` lone queries and with
``--warmup + --queries``.  The difference, divided by ``--queries``, is the
instructions one lone query costs the runtime process: gateway, controller,
worker actors, NATS client and HTTP client.  The nats-server and the LLM
server run outside valgrind and are not counted.  Instructions are not time:
a cache miss costs more than an add.  Use it to compare two commits.

    python bench/instructions.py [--queries 100] [--warmup 10] [--metrics]

``--metrics`` counts twice more with the runtime process serving Prometheus ``/metrics``
(``hieramas.metrics.serve_metrics``) and prints the ratio to the run without, measured
in the same run.

Needs valgrind (Debian package ``valgrind``); a run takes one to two minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from overhead import config_text, run_queries, start_llm_server

from hieramas.controller.client import HieraClient
from hieramas.stack import Stack

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(url: str, queries: int) -> None:
    """Inside valgrind: start the stack, apply the config, answer ``queries`` lone queries."""
    if os.environ.get("HIERAMAS_BENCH_METRICS") == "1":
        from hieramas.metrics import serve_metrics

        serve_metrics(0)
    with Stack(workers=1) as stack:
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text(url)), 120)
        results, _ = stack.bus.call(run_queries(client, queries, 1), 1200)
    failed = [r for r in results if r.get("error")]
    if failed:
        sys.exit(f"{len(failed)} of {queries} queries failed: {failed[0]['error']}")


def count(valgrind: str, url: str, queries: int, *, metrics: bool = False) -> int:
    """Instructions of one child process answering ``queries`` lone queries."""
    args = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--child", url, str(queries),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same set and dict layouts in every run
    env["HIERAMAS_BENCH_METRICS"] = "1" if metrics else "0"
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"the run under valgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description="HieraMAS instructions per lone query")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--metrics", action="store_true", help="also with /metrics served")
    parser.add_argument("--child", nargs=2, metavar=("URL", "QUERIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind not found: install it (Debian: apt-get install valgrind)")
    proc, url = start_llm_server(0.0)
    try:
        started = time.perf_counter()
        base = count(valgrind, url, args.warmup)
        full = count(valgrind, url, args.warmup + args.queries)
        if args.metrics:
            base_on = count(valgrind, url, args.warmup, metrics=True)
            full_on = count(valgrind, url, args.warmup + args.queries, metrics=True)
    finally:
        proc.terminate()
        proc.wait()
    per_query = (full - base) / args.queries
    print("8 supernodes x 3 proposers, 10 edges (depth 4), scripted instant LLM server")
    print(f"runtime process, {args.warmup} lone queries: {base / 1e6:,.1f} M instructions")
    print(f"runtime process, {args.warmup + args.queries} lone queries: {full / 1e6:,.1f} M")
    print(
        f"per lone query: {per_query / 1e6:.2f} M instructions "
        f"(gateway + controller + worker actors + NATS and HTTP clients; "
        f"{time.perf_counter() - started:.0f} s)"
    )
    if args.metrics:
        on = (full_on - base_on) / args.queries
        print(
            f"per lone query with /metrics served: {on / 1e6:.2f} M instructions, "
            f"{on / per_query:.3f}x without ({(on / per_query - 1) * 100:+.1f}%)"
        )


if __name__ == "__main__":
    main()
