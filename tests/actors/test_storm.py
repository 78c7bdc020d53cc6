"""Memory stays flat under a garbage storm: no actor, cache or registry grows with what a
message names.  (Issue 17: 20,000 malformed calls cost a worker 41 MB, never freed.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from garbage import rss_mb, storm

from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, ask, config_yaml, node

STORM = 20_000


def test_a_worker_keeps_its_memory_and_its_actors_under_a_garbage_storm(
    nats_server: NatsServer, llm_url: str
) -> None:
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "error"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "hieramas", "worker", "--nats", nats_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline().decode()
        assert line.startswith("worker "), line
        inbox = f"hm.inst.{line.split()[1]}"
        with Stack(nats_url=nats_server.url, workers=0) as stack:
            assert stack.bus is not None and stack.controller is not None
            cfg = config_yaml(llm_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")})
            apply_config(stack, cfg)
            assert ask(stack)["status"] == "ok"
            gateway = stack.controller.gateway.inbox
            stack.bus.call(storm(stack.bus, 2_000, inbox, gateway), 120)  # warm up
            time.sleep(0.5)
            before = rss_mb(worker.pid)
            stack.bus.call(storm(stack.bus, STORM, inbox, gateway, start=2_000), 300)
            time.sleep(0.5)
            after = rss_mb(worker.pid)
            print(f"worker RSS {before:.1f} MB before, {after:.1f} MB after {STORM} bad messages")
            assert after - before < 5.0, (before, after)  # e6170a6 grew by about 20 MB here
            assert ask(stack)["status"] == "ok"  # and it still serves
            assert worker.poll() is None
    finally:
        worker.kill()
        worker.wait(5)
