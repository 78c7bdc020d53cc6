"""A worker's memory under a garbage storm (issue 17: 20,000 malformed calls cost 41 MB).

Starts nats-server, the scripted LLM server, a controller in this process and one worker
process (``python -m hieramas worker``), applies a one-node config, sends a warm-up storm,
then ``--calls`` garbage messages (``tests/garbage.py``: made-up node and slot names, wrong
field types, unknown config versions, forged bookkeeping), and prints the worker's RSS
before and after each round.  ``--worker-pythonpath DIR`` runs the worker from another
checkout (a symlink farm of an older commit, see DEVELOPERS.md), to compare.

    python bench/garbage_storm.py [--calls 20000] [--rounds 2] [--worker-pythonpath DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from garbage import rss_mb, storm

from hieramas.llm.loopback import LoopbackLLM
from hieramas.logs import configure_logging
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, config_yaml, node


def main() -> None:
    parser = argparse.ArgumentParser(description="worker RSS under a garbage storm")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker-pythonpath", default=None)
    args = parser.parse_args()
    configure_logging("error")  # the storm is rejected loudly here too (the gateway's inbox)
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "error"}
    if args.worker_pythonpath:
        env["PYTHONPATH"] = args.worker_pythonpath
    with NatsServer() as server, LoopbackLLM(record=False) as llm:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hieramas", "worker", "--nats", server.url],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
        )  # fmt: skip
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline().decode()
            if not line.startswith("worker "):
                sys.exit(f"the worker did not start: {line!r}")
            inbox = f"hm.inst.{line.split()[1]}"
            with Stack(nats_url=server.url, workers=0) as stack:
                assert stack.bus is not None and stack.controller is not None
                apply_config(
                    stack,
                    config_yaml(llm.base_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")}),
                )
                gateway = stack.controller.gateway.inbox
                stack.bus.call(storm(stack.bus, 2_000, inbox, gateway), 300)
                time.sleep(1)
                start = rss_mb(worker.pid)
                print(f"worker RSS after a 2,000-message warm-up: {start:.1f} MB")
                for round_ in range(args.rounds):
                    began = time.perf_counter()
                    first = 2_000 + round_ * args.calls
                    stack.bus.call(storm(stack.bus, args.calls, inbox, gateway, first), 600)
                    took = time.perf_counter() - began
                    time.sleep(1)
                    now = rss_mb(worker.pid)
                    print(
                        f"after round {round_ + 1} ({args.calls:,} messages, {took:.1f} s): "
                        f"{now:.1f} MB ({now - start:+.1f} MB since the warm-up)"
                    )
        finally:
            worker.kill()
            worker.wait(5)


if __name__ == "__main__":
    main()
