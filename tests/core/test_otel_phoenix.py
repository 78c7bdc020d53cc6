"""Traces to OpenTelemetry, end to end, against a real Arize Phoenix on loopback.

A query whose nodes run in two ``hieramas worker`` processes, asked with a caller's W3C
``traceparent``; ``hieramas traces export`` turns the trace stream into OTLP spans; Phoenix's
REST API must then hold one trace, the caller's, with the GenAI span tree and attributes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from phoenix_support import phoenix_server

from hieramas.controller.client import HieraClient
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import LlmCall, QueryDone
from support import config_yaml, node

pytestmark = pytest.mark.timeout(1800)  # the first run installs Phoenix (minutes)

PROJECT = "hieramas-test"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with phoenix_server(tmp_path_factory.mktemp("phoenix")) as server:
        yield server


def _worker(url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HIERAMAS_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hieramas", "worker", "--nats", url, *extra],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("worker "), line
    return proc


def _spans(base: str, trace_id: str, want: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """The trace's spans in Phoenix, once ``want`` have arrived (ingestion is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = httpx.get(
            f"{base}/v1/projects/{PROJECT}/spans",
            params={"trace_id": trace_id, "limit": 1000},
            timeout=10,
        )
        if resp.status_code == 200:
            spans = resp.json()["data"]
            if len(spans) >= want:
                return spans
        time.sleep(0.5)
    raise AssertionError(f"{len(spans)} of {want} spans reached Phoenix: {spans}")


def test_a_query_across_two_workers_is_one_trace_in_phoenix(
    phoenix: tuple[str, int], nats_server: NatsServer, llm_url: str, tmp_path: Path
) -> None:
    base, phoenix_pid = phoenix
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A", "fail"], "fixed:A"),
            "critic": node("Critic", ["fixed:A"], "fixed:A"),
        },
        [("expert", "critic")],
        decision="fixed:B",  # the nodes agree on A: no decision call unless they disagree
    )
    cfg += "placement:\n  gpu: [critic, decision]\n"
    workers = [_worker(nats_server.url), _worker(nats_server.url, "--group", "gpu")]
    try:
        with Stack(nats_url=nats_server.url, workers=0) as stack:
            assert stack.bus is not None
            client = HieraClient(stack.bus)
            stack.bus.call(client.apply_config(cfg), 30)
            traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
            result = stack.bus.call(client.ask("Which option?", traceparent=traceparent), 60)
            assert result["status"] == "ok", result
            assert result["trace_id"] == CALLER_TRACE
            nodes = result["nodes"]
            assert nodes["expert"]["worker"] != nodes["critic"]["worker"]  # two processes

            async def stored() -> list[Any]:  # every event is in the stream before exporting
                deadline = time.monotonic() + 30
                while True:
                    events = await replay(stack.bus, Subjects(), idle_s=0.3)  # type: ignore[arg-type]
                    mine = [e for e in events if e.query_id == result["query_id"]]
                    calls = [e for e in mine if isinstance(e, LlmCall)]
                    done = any(isinstance(e, QueryDone) for e in mine)
                    if (done and len(calls) >= 5) or time.monotonic() > deadline:
                        return mine
                    await asyncio.sleep(0.3)

            mine = stack.bus.call(stored(), 60)
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(10)
    calls = [e for e in mine if isinstance(e, LlmCall)]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": base,
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={PROJECT}",
        "HIERAMAS_LOG_LEVEL": "warning",
    }
    export = subprocess.run(
        [sys.executable, "-m", "hieramas", "traces", "export", "--nats", nats_server.url,
         "--idle-exit", "2"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr.decode()
    # a workflow span, 2 supernodes + decision, and per call a slot span and a chat span
    # (the decision's call, if any, has no slot span)
    decision_calls = sum(1 for c in calls if c.node == "decision")
    want = 1 + 3 + 2 * len(calls) - decision_calls
    spans = _spans(base, CALLER_TRACE, want)
    assert len(spans) == want, [s["name"] for s in spans]
    assert {s["context"]["trace_id"] for s in spans} == {CALLER_TRACE}  # one trace: the caller's
    by_id = {s["context"]["span_id"]: s for s in spans}
    named = {s["name"]: s for s in spans}

    def attrs(span: dict[str, Any]) -> dict[str, Any]:
        return dict(span.get("attributes") or {})

    workflow = named["invoke_workflow hieramas"]
    assert workflow["parent_id"] == CALLER_SPAN  # hangs under the caller's span
    assert attrs(workflow)["gen_ai.operation.name"] == "invoke_workflow"
    assert attrs(workflow)["hieramas.config_version"] == result["config_version"]
    assert "gen_ai.input.messages" not in attrs(workflow)  # content is opt-in
    for name in ("expert", "critic", "decision"):
        agent = named[f"invoke_agent {name}"]
        assert agent["parent_id"] == workflow["context"]["span_id"]
        assert attrs(agent)["gen_ai.operation.name"] == "invoke_agent"
        assert attrs(agent)["gen_ai.agent.name"] == name
    assert attrs(named["invoke_agent expert"])["hieramas.worker"] == nodes["expert"]["worker"]
    assert attrs(named["invoke_agent critic"])["hieramas.worker"] == nodes["critic"]["worker"]
    chats = [s for s in spans if s["name"].startswith("chat ")]
    assert len(chats) == len(calls)
    assert sum(attrs(c).get("error.type") is not None for c in chats) == 1  # the 'fail' proposer
    for chat in chats:
        a = attrs(chat)
        slot = by_id[chat["parent_id"]]
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert chat["name"] == f"chat {a['gen_ai.request.model']}"
        if a["hieramas.node"] == "decision":
            assert slot["name"] == "invoke_agent decision"
            continue
        assert slot["name"] == f"invoke_agent {a['hieramas.node']}.{a['hieramas.slot']}"
        assert by_id[slot["parent_id"]]["name"] == f"invoke_agent {a['hieramas.node']}"
        assert {"hieramas.attempt", "hieramas.worker", "hieramas.cost_usd"} <= set(a)
        if a["gen_ai.request.model"] == "fail":
            assert "error.type" in a and chat["status_code"] == "ERROR"
        else:
            assert a["gen_ai.response.model"] == a["gen_ai.request.model"]
            assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    # Phoenix needed nothing outside this machine: every connection it holds is loopback
    remote = [
        c.raddr.ip
        for c in psutil.Process(phoenix_pid).net_connections(kind="inet")
        if c.raddr and c.raddr.ip not in ("127.0.0.1", "::1")
    ]
    assert remote == []
