"""Gateway failover: a controller SIGKILLed with queries in flight, a nats-server restarted
mid-stream; real nats-server, real controller and worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.controller.failover import QUERY_BUCKET
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer, free_port
from hieramas.stack import Stack
from support import config_yaml, node

DEADLINE_S = 20.0


def _spawn(url: str, command: str, ready: str) -> subprocess.Popen[bytes]:
    """A ``hieramas <command>`` process, once it says it is ``ready``."""
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hieramas", command, "--nats", url],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith(ready), line
    return proc


def _slow_config(llm_url: str) -> str:
    return config_yaml(
        llm_url,
        {
            "expert": node("Critic", ["slow:1", "fixed:A"], "fixed:A"),
            "doctor": node("Doctor", ["fixed:A"], "fixed:A"),
        },
        [("expert", "doctor")],
        query_timeout_s=DEADLINE_S,
        extra_llms=["slow:1"],
    )


def _fast_config(llm_url: str) -> str:
    """Three nodes in a chain, instant LLMs: many messages in flight at any moment."""
    return config_yaml(
        llm_url,
        {
            "expert": node("Critic", ["fixed:A", "fixed:B"], "fixed:A"),
            "doctor": node("Doctor", ["fixed:A"], "fixed:A"),
            "lawyer": node("Lawyer", ["fixed:B"], "fixed:B"),
        },
        [("expert", "doctor"), ("doctor", "lawyer")],
        query_timeout_s=DEADLINE_S,
    )


async def _timed(client: HieraClient, text: str) -> tuple[dict[str, Any], float]:
    """A query's result (or the exception that ended the wait, as a ``hung`` result) and
    how long its client waited."""
    started = time.monotonic()
    try:
        result = await client.ask(text, timeout_s=DEADLINE_S)
    except Exception as exc:
        result = {"status": "hung", "error": f"{type(exc).__name__}: {exc}"}
    return result, time.monotonic() - started


def test_a_killed_controllers_queries_are_finished_by_the_other(
    nats_server: NatsServer, llm_url: str
) -> None:
    """SIGKILL one of two controllers with 60 queries in flight: the survivor hears its
    heartbeats stop, claims its query records and runs those queries again; every client
    gets its answer well before the deadline."""
    controllers = [_spawn(nats_server.url, "controller", "controller running") for _ in range(2)]
    try:
        with Stack(nats_url=nats_server.url, controller=False) as stack:
            assert stack.bus is not None
            client = HieraClient(stack.bus)
            stack.bus.call(client.apply_config(_slow_config(llm_url)), 15)

            async def scenario() -> tuple[list[tuple[dict[str, Any], float]], list[Any]]:
                flight = [asyncio.ensure_future(_timed(client, f"q{i}?")) for i in range(60)]
                await asyncio.sleep(0.5)  # every query is inside its slow proposer call
                controllers[0].send_signal(signal.SIGKILL)
                during = await asyncio.gather(*flight)
                after = await asyncio.gather(*(_timed(client, f"a{i}?") for i in range(10)))
                return list(during), list(after)

            during, after = stack.bus.call(scenario(), 90)

            async def records() -> list[str]:
                await asyncio.sleep(2.5)  # purge markers last a second
                kv = await stack.bus.js.key_value(QUERY_BUCKET)  # type: ignore[union-attr]
                try:
                    return list(await kv.keys())
                except Exception:  # nats-py: NoKeysError when none is left
                    return []

            left = stack.bus.call(records(), 20)
    finally:
        for proc in controllers:
            proc.kill()
            proc.wait(5)
    statuses = [r["status"] for r, _ in during]
    assert statuses == ["ok"] * 60, [r.get("error") for r, _ in during if r["status"] != "ok"]
    adopted = [r for r, _ in during if r.get("adopted_from")]
    assert 0 < len(adopted) < 60  # the queue group gave the dead one its share
    assert len({tuple(r["adopted_from"]) for r in adopted}) == 1
    slowest = max(waited for _, waited in during)
    assert slowest < DEADLINE_S / 2, slowest  # ~3.5 s to notice the death, ~1 s to redo
    assert [r["status"] for r, _ in after] == ["ok"] * 10
    assert left == []  # every record was dropped once its query was answered


def test_a_nats_restart_mid_stream_leaves_no_query_waiting_out_its_deadline(
    tmp_path: Path, llm_url: str
) -> None:
    """Kill nats-server (SIGKILL; JetStream on disk) while a stream of queries runs and
    start it again on the same port and store: whatever was lost (requests, replies,
    node inputs and outputs, slot calls) is sent again, and no query waits out its deadline."""
    port = free_port()
    store = tmp_path / "js"
    server = NatsServer(port=port, store_dir=store).start()
    procs: list[subprocess.Popen[bytes]] = []
    bus: Bus | None = None
    try:
        procs.append(_spawn(server.url, "controller", "controller running"))
        procs.append(_spawn(server.url, "worker", "worker "))
        bus = Bus(NatsSettings.from_env(server.url), sender="test-client").start()
        client = HieraClient(bus)
        bus.call(client.apply_config(_fast_config(llm_url)), 15)

        async def scenario() -> list[tuple[dict[str, Any], float]]:
            flight = []
            for i in range(100):
                flight.append(asyncio.ensure_future(_timed(client, f"q{i}?")))
                await asyncio.sleep(0.01)
                if i == 50:  # half-way: queries in flight, and 50 more to ask while it is down
                    await asyncio.to_thread(_restart, server)
            return list(await asyncio.gather(*flight))

        results = bus.call(scenario(), 120)
    finally:
        if bus is not None:
            bus.stop()
        for proc in procs:
            proc.kill()
            proc.wait(5)
        server.stop()
    hung = [(r, waited) for r, waited in results if r["status"] == "hung"]
    assert not hung, hung
    slowest = max(waited for _, waited in results)
    assert slowest < DEADLINE_S - 5, slowest
    assert all(r["status"] == "ok" or r.get("error") for r, _ in results)  # else explicit
    # nobody serving the gateway or a node while it was down is waited for, not an error
    # (at 1a3b39e some of these clients hung on 'no responders', a fifth failed no_worker)
    ok = sum(r["status"] == "ok" for r, _ in results)
    assert ok >= 95, [r.get("error") for r, _ in results if r["status"] != "ok"]


def _restart(server: NatsServer) -> None:
    """SIGKILL the server and start it again on its port and store."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(5)
    server.stop()
    time.sleep(0.3)
    server.start()
