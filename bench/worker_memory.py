"""Does a worker's memory grow per query served? (issue 17, bounded state)

One host, no network namespaces: nats-server, the emulator at latency 0, a controller in
this process and one worker process (``python -m hieramas worker``), the demo config
(three supernodes, a decision).  Sends ``--blocks`` blocks of ``--queries`` valid queries
from ``--clients`` clients after a warm-up, and prints the worker's RSS after each block,
as a change from the first block (so start-up and first-use caches are not counted).
``--tracemalloc`` runs the worker under tracemalloc and prints, per block, the top growth
by file:line since the first block (the snapshots themselves take worker memory, so under
``--tracemalloc`` read the traced-heap figure, not the RSS).  Figures are EMULATED.

    python bench/worker_memory.py [--blocks 3] [--queries 2000] [--clients 8] [--warmup 200]
                                  [--latency-scale 0] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hieramas.controller.client import HieraClient
from hieramas.loadgen import QueryLoad
from hieramas.logs import configure_logging
from hieramas.natsserver import NatsServer
from hieramas.stack import EmulatorProcess, Stack

DEMO = Path(__file__).resolve().parent.parent / "hieramas" / "configs" / "default.yaml"

# Run as the worker under tracemalloc: SIGUSR1 dumps a snapshot to $HM_SNAPSHOT.<n>.
_TRACED = """
import os, signal, sys, tracemalloc
tracemalloc.start(1)
count = [0]
def dump(*_):
    count[0] += 1
    tracemalloc.take_snapshot().dump(f"{os.environ['HM_SNAPSHOT']}.{count[0]}")
signal.signal(signal.SIGUSR1, dump)
from hieramas.cli import main
sys.argv = ["hieramas", *sys.argv[1:]]
main()
"""


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB."""
    return _status(pid, "VmRSS") / 1024


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def _snapshot(worker: subprocess.Popen[bytes], prefix: str, n: int) -> Path:
    path = Path(f"{prefix}.{n}")
    worker.send_signal(signal.SIGUSR1)
    for _ in range(600):
        if path.exists():
            time.sleep(0.5)  # let the dump finish
            return path
        time.sleep(0.1)
    raise RuntimeError("the worker wrote no tracemalloc snapshot")


def _top_growth(first: Path, now: Path, top: int = 8) -> None:
    import tracemalloc

    before, after = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(now))
    total = sum(t.size for t in after.traces) - sum(t.size for t in before.traces)
    print(f"    traced Python heap {total / 2**20:+.2f} MB vs block 1; top growth by line:")
    diff = after.compare_to(before, "lineno")
    for stat in diff[:top]:
        print(
            f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="worker RSS per block of queries (EMULATED)")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2_000, help="queries per block")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200, help="queries before block 1")
    parser.add_argument("--config", type=Path, default=DEMO)
    parser.add_argument("--latency-scale", type=float, default=0.0, help="emulated latency")
    parser.add_argument("--tracemalloc", action="store_true", help="top growth by file:line")
    args = parser.parse_args()
    configure_logging("error")
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "error"}
    snapdir = tempfile.mkdtemp(prefix="hm-wmem-")
    prefix = f"{snapdir}/snap"
    env["HM_SNAPSHOT"] = prefix
    with NatsServer() as server:
        emulator = EmulatorProcess(latency_scale=args.latency_scale).start()
        cmd = [sys.executable, "-m", "hieramas"]
        if args.tracemalloc:
            cmd = [sys.executable, "-c", _TRACED]
        cmd += ["worker", "--nats", server.url, "--emulator-url", emulator.url]
        worker = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/"
        )
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline().decode()
            if not line.startswith("worker "):
                sys.exit(f"the worker did not start: {line!r}")
            with Stack(nats_url=server.url, workers=0, emulator_url=emulator.url) as stack:
                assert stack.bus is not None
                client = HieraClient(stack.bus, sender="bench")
                stack.bus.call(client.apply_config(args.config.read_text(), source="bench"), 30)
                warm = QueryLoad(stack.bus, clients=args.clients, timeout_s=30)
                stack.bus.call(warm.run(queries=args.warmup), 300)
                print(
                    f"worker memory (EMULATED LLMs, latency scale {args.latency_scale}): config {args.config.name}, "
                    f"{args.clients} clients, {args.blocks} blocks of {args.queries:,} queries"
                )
                print(
                    f"worker RSS after {args.warmup} warm-up queries: {rss_mb(worker.pid):.1f} MB"
                )
                first_rss = None
                first_snap = None
                for block in range(args.blocks):
                    load = QueryLoad(stack.bus, clients=args.clients, timeout_s=30)
                    began = time.perf_counter()
                    stack.bus.call(load.run(queries=args.queries), 3600)
                    took = time.perf_counter() - began
                    time.sleep(2)  # past the in-flight queries' bookkeeping
                    now = rss_mb(worker.pid)
                    kinds = dict(load.kinds())
                    if first_rss is None:
                        first_rss = now
                    grew = now - first_rss
                    per_q = grew * 1024 / (args.queries * block) if block else 0.0
                    print(
                        f"block {block + 1}: {took:.1f} s, {kinds}, worker RSS {now:.1f} MB "
                        f"({grew:+.1f} MB vs block 1, {per_q:+.2f} KB/query), "
                        f"{_status(worker.pid, 'Threads')} threads",
                        flush=True,
                    )
                    if args.tracemalloc:
                        snap = _snapshot(worker, prefix, block + 1)
                        if first_snap is None:
                            first_snap = snap
                        else:
                            _top_growth(first_snap, snap)
        finally:
            worker.kill()
            worker.wait(5)
            emulator.stop()


if __name__ == "__main__":
    main()
