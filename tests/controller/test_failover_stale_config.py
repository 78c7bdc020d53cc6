"""An adopted query whose config version was superseded while its gateway was dead: the
case of a training run SIGKILLed mid-iteration and resumed (its gateway lives in the
driver's process; the resumed run applies a config naming its new LLM server's port).
Real nats-server, real controller processes, real LLM servers on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

from hieramas.controller.client import HieraClient
from hieramas.llm.loopback import LoopbackLLM
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import config_yaml, node

DEADLINE_S = 20.0
# the queue group picks a controller at random per query: with 16 of each kind, the chance
# that the killed one got none of a kind is 2**-16 (with 6 it was 1 in 64, seen in CI)
PER_KIND = 16


def _spawn(url: str, command: str, ready: str) -> subprocess.Popen[bytes]:
    """A ``hieramas <command>`` process, once it says it is ``ready``."""
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hieramas", command, "--nats", url], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith(ready), line
    return proc


def _config(llm_url: str, endpoint: str = "scripted") -> str:
    text = config_yaml(
        llm_url,
        {"expert": node("Critic", ["slow:2", "fixed:A"], "fixed:A")},
        query_timeout_s=DEADLINE_S,
        extra_llms=["slow:2"],
    )
    # another endpoint name: the old one's breaker, opened by the dead server, is not shared
    return text.replace("scripted", endpoint)


async def _ask(client: HieraClient, text: str, version: int | None) -> dict[str, Any]:
    try:
        return await client.ask(text, timeout_s=DEADLINE_S, config_version=version)
    except Exception as exc:
        return {"status": "hung", "error": f"{type(exc).__name__}: {exc}"}


def test_an_adopted_query_is_not_run_under_a_config_whose_endpoints_are_gone(
    nats_server: NatsServer, llm_url: str
) -> None:
    """Queries in flight when their controller is SIGKILLed and their LLM server stopped;
    a new config (another server) is applied, and the next controller adopts them: the one
    pinned to the old version fails at once with ``config_superseded`` (no plan, so no
    episode), the unpinned one runs under the new version; none calls the dead server."""
    old_llm = LoopbackLLM(record=False).start()
    first = _spawn(nats_server.url, "controller", "controller running")
    second = _spawn(nats_server.url, "controller", "controller running")
    try:
        with Stack(nats_url=nats_server.url, controller=False) as stack:
            assert stack.bus is not None
            client = HieraClient(stack.bus)
            v1 = stack.bus.call(client.apply_config(_config(old_llm.base_url)), 15)

            async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
                pinned = [
                    asyncio.ensure_future(_ask(client, f"p{i}?", v1)) for i in range(PER_KIND)
                ]
                free = [
                    asyncio.ensure_future(_ask(client, f"u{i}?", None)) for i in range(PER_KIND)
                ]
                await asyncio.sleep(0.7)  # all inside their slow proposer call
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(old_llm.stop)  # its endpoints are gone
                # the survivor hears the death 3.5 s later: the new config is current by then
                v2 = await client.apply_config(_config(llm_url, endpoint="resumed"))
                return list(await asyncio.gather(*pinned)), list(await asyncio.gather(*free)), v2

            pinned, free, v2 = stack.bus.call(scenario(), 60)
    finally:
        old_llm.stop()
        for proc in (first, second):
            proc.kill()
            proc.wait(5)
    assert v2 != v1
    adopted = [r for r in pinned if r.get("adopted_from")]
    assert adopted, "the queue group gave the killed controller none of them"
    for result in adopted:  # refused, not run under v1 (no plan: no episode)
        assert result["status"] == "config_superseded", result
        assert not result.get("nodes") and not result.get("failures"), result
    for result in (r for r in free if r.get("adopted_from")):  # run again under v2
        assert (result["status"], result["config_version"]) == ("ok", v2), result
    assert any(r.get("adopted_from") for r in free)
