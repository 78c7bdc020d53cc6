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

    python bench/instructions.py [--queries 100] [--warmup 10]

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
    with Stack(workers=1) as stack:
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text(url)), 120)
        results, _ = stack.bus.call(run_queries(client, queries, 1), 1200)
    failed = [r for r in results if r.get("error")]
    if failed:
        sys.exit(f"{len(failed)} of {queries} queries failed: {failed[0]['error']}")


def count(valgrind: str, url: str, queries: int) -> int:
    """Instructions of one child process answering ``queries`` lone queries."""
    args = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--child", url, str(queries),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same set and dict layouts in every run
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"the run under valgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description="HieraMAS instructions per lone query")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
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


if __name__ == "__main__":
    main()
