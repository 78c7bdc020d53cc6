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

    python bench/instructions.py [--queries 100] [--warmup 10] [--metrics] [--observability]

``--metrics`` counts twice more with the runtime process serving Prometheus ``/metrics``
(``hieramas.metrics.serve_metrics``) and prints the ratio to the run without, measured
in the same run.  ``--observability`` counts twice more with everything on: ``/metrics``
served and ``hieramas traces export`` running beside the stack (a separate process, outside
valgrind, sending OTLP to a sink in this script), and also prints the exporter's own CPU
seconds per query (``getrusage``, wall-clock CPU: noisy, unlike the instruction counts).

Needs valgrind (Debian package ``valgrind``); a run takes one to two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from overhead import config_text, run_queries, start_llm_server

from hieramas.controller import client as client_module
from hieramas.controller.client import HieraClient
from hieramas.stack import Stack

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_EXPORTER_CPU = re.compile(r"EXPORTER_CPU_S (\S+)")


def child(url: str, queries: int) -> None:
    """Inside valgrind: start the stack, apply the config, answer ``queries`` lone queries."""
    if os.environ.get("HIERAMAS_BENCH_METRICS") == "1":
        from hieramas.metrics import serve_metrics

        serve_metrics(0)
    sink = os.environ.get("HIERAMAS_BENCH_OTLP_SINK")
    # A lone query is sent once: under valgrind on a loaded VM one can take over the client's
    # 1 s resend delay, and a resend's extra work made counts differ by several percent.
    client_module.RESEND_FIRST_S = 0.0
    with Stack(workers=1) as stack:
        exporter = _start_exporter(stack.url, sink) if sink else None
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text(url)), 120)
        results, _ = stack.bus.call(run_queries(client, queries, 1), 1200)
        if exporter is not None:
            stack.bus.call(_exported(stack), 600)
            exporter.terminate()
            exporter.wait(60)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(f"EXPORTER_CPU_S {usage.ru_utime + usage.ru_stime:.3f}", flush=True)
    failed = [r for r in results if r.get("error")]
    if failed:
        sys.exit(f"{len(failed)} of {queries} queries failed: {failed[0]['error']}")


def _start_exporter(nats_url: str, sink: str) -> subprocess.Popen[bytes]:
    """``hieramas traces export`` on the stack's NATS, sending to ``sink`` (not under valgrind:
    it is a separate process, as deployed)."""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": sink, "HIERAMAS_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "hieramas", "traces", "export", "--nats", nats_url]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _exported(stack: Stack) -> None:
    """Wait until the exporter has acknowledged every stored trace message."""
    from hieramas.otelexport import DURABLE
    from hieramas.traces import TRACE_STREAM

    assert stack.bus is not None
    settled = 0
    while settled < 3:  # the emitters' last batches may still be lingering
        await asyncio.sleep(1.0)
        try:
            info = await stack.bus.js.consumer_info(TRACE_STREAM, DURABLE)
        except Exception:  # not created yet
            settled = 0
            continue
        idle = not info.num_pending and not info.num_ack_pending
        settled = settled + 1 if idle else 0


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts and drops every export (an empty response is a
    valid ExportTraceServiceResponse)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def count(
    valgrind: str, url: str, queries: int, *, metrics: bool = False, sink: str | None = None
) -> tuple[int, float]:
    """Instructions of one child process answering ``queries`` lone queries, and the CPU
    seconds of its exporter (0 without ``sink``)."""
    args = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--child", url, str(queries),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same set and dict layouts in every run
    env["HIERAMAS_BENCH_METRICS"] = "1" if metrics else "0"
    env.pop("HIERAMAS_BENCH_OTLP_SINK", None)
    if sink:
        env["HIERAMAS_BENCH_OTLP_SINK"] = sink
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"the run under valgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = _EXPORTER_CPU.search(done.stdout)
    return int(found.group(1)), float(cpu.group(1)) if cpu else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description="HieraMAS instructions per lone query")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--metrics", action="store_true", help="also with /metrics served")
    parser.add_argument(
        "--observability",
        action="store_true",
        help="also with everything on: /metrics served and traces export running",
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "QUERIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind not found: install it (Debian: apt-get install valgrind)")
    proc, url = start_llm_server(0.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        started = time.perf_counter()
        base, _ = count(valgrind, url, args.warmup)
        full, _ = count(valgrind, url, args.warmup + args.queries)
        if args.metrics:
            base_on, _ = count(valgrind, url, args.warmup, metrics=True)
            full_on, _ = count(valgrind, url, args.warmup + args.queries, metrics=True)
        if args.observability:
            base_all, cpu_base = count(valgrind, url, args.warmup, metrics=True, sink=sink)
            n = args.warmup + args.queries
            full_all, cpu_full = count(valgrind, url, n, metrics=True, sink=sink)
    finally:
        server.shutdown()
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
    if args.observability:
        on = (full_all - base_all) / args.queries
        print(
            f"per lone query with everything on (/metrics served, traces export running): "
            f"{on / 1e6:.2f} M instructions, {on / per_query:.3f}x without "
            f"({(on / per_query - 1) * 100:+.1f}%)"
        )
        print(
            f"the exporter process (not on the query path): "
            f"{(cpu_full - cpu_base) / args.queries * 1e3:.2f} ms CPU per query "
            f"({cpu_base:.2f} s with {args.warmup} queries, {cpu_full:.2f} s with {n})"
        )


if __name__ == "__main__":
    main()
