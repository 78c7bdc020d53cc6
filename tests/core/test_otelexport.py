"""The trace exporter on a real NATS and a real OTLP/HTTP receiver on loopback: it sends
again what the receiver refused, acknowledges only what was accepted, resumes after the
last acknowledged message, and replays the stored stream with ``reset``."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import start_http_server

from hieramas import metrics
from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.otelexport import TraceExporter, TraceStreamMissing
from hieramas.stack import Stack
from hieramas.traces import ensure_trace_stream
from hieramas.wire import Subjects
from support import apply_config, ask, config_yaml, node


class Receiver:
    """An OTLP/HTTP trace receiver that refuses the first ``refuse`` exports (400)."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.refused = 0
        self.spans: list[tuple[str, str, str]] = []  # (trace id, span id, name)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.refused < receiver.refuse:
                    receiver.refused += 1
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        receiver.spans += [
                            (s.trace_id.hex(), s.span_id.hex(), s.name) for s in ss.spans
                        ]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver(refuse=2)
    yield got
    got.server.shutdown()


def _export(stack: Stack, receiver: Receiver, **kw: object) -> TraceExporter:
    """Run an exporter until the stream has been idle for 2 s."""
    assert stack.bus is not None
    exporter = TraceExporter(stack.bus, OTLPSpanExporter(endpoint=receiver.url), **kw)  # type: ignore[arg-type]

    async def run() -> None:
        await exporter.open()
        try:
            await exporter.run(lambda: False, idle_exit_s=2)
        finally:
            await exporter.close()

    stack.bus.call(run(), 120)
    return exporter


def test_refused_spans_are_sent_again_and_a_durable_consumer_resumes(
    stack: Stack, llm_url: str, receiver: Receiver
) -> None:
    cfg = config_yaml(llm_url, {"expert": node("Critic", ["fixed:A", "fixed:A"], "fixed:A")})
    apply_config(stack, cfg)
    first = ask(stack)
    assert first["status"] == "ok", first
    _export(stack, receiver)
    assert receiver.refused == 2  # refused twice, then sent again until accepted
    names = sorted(name for trace, _, name in receiver.spans if trace == first["trace_id"])
    assert names == sorted(
        ["invoke_workflow hieramas", "invoke_agent expert", "invoke_agent decision"]
        + ["invoke_agent expert.p0", "invoke_agent expert.p1", "invoke_agent expert.synth"]
        + ["chat fixed:A"] * 3
    )
    # the same durable consumer resumes after what it acknowledged: only the new query
    second = ask(stack)
    before = len(receiver.spans)
    _export(stack, receiver)
    new = receiver.spans[before:]
    assert {trace for trace, _, _ in new} == {second["trace_id"]}
    # reset replays the stored stream: the same spans, the same ids
    before = len(receiver.spans)
    _export(stack, receiver, reset=True)
    replayed = set(receiver.spans[before:])
    assert replayed == set(receiver.spans[:before])


def _sample(page: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", page, re.M)
    assert found, f"{name} not served"
    return float(found.group(1))


def test_the_exporter_serves_its_own_metrics(
    stack: Stack, llm_url: str, receiver: Receiver
) -> None:
    gc.collect()  # exporters of other tests are tracked weakly: let them go
    server, _ = start_http_server(0, addr="127.0.0.1", registry=metrics.REGISTRY)
    try:
        cfg = config_yaml(llm_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")})
        apply_config(stack, cfg)
        assert ask(stack)["status"] == "ok"
        exporter = _export(stack, receiver, durable="metrics-test", reset=True)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        page = httpx.get(url, timeout=10).text
    finally:
        server.shutdown()
    assert _sample(page, "hieramas_export_spans_total") == len(receiver.spans) > 0
    assert _sample(page, "hieramas_export_failures_total") == receiver.refused == 2
    assert _sample(page, "hieramas_export_events_skipped_total") == 0
    assert _sample(page, "hieramas_export_acked_sequence") == exporter.acked_seq > 0
    assert _sample(page, "hieramas_export_consumer_lag_messages") == 0


def test_up_runs_the_exporter_beside_the_stack(tmp_path: Path, llm_url: str) -> None:
    """`hieramas up --otel-export` starts `hieramas traces export`: a query's spans reach the
    OTLP endpoint; SIGTERM stops both."""
    got = Receiver()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config_yaml(llm_url, {"a": node("Critic", ["fixed:B"], "fixed:B")}))
    endpoint = got.url.removesuffix("/v1/traces")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    hieramas = [sys.executable, "-m", "hieramas"]
    up = subprocess.Popen(
        [*hieramas, "up", "--config", str(cfg), "--no-emulator", "--no-learner", "--otel-export"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert up.stdout is not None
        url = up.stdout.readline().split()[1]
        asked = subprocess.run(
            [*hieramas, "ask", "--nats", url, "--json", "Which option?"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asked.returncode == 0, asked.stderr
        trace_id = json.loads(asked.stdout)["trace_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(t == trace_id for t, _, _ in got.spans):
            time.sleep(0.2)
        assert any(t == trace_id for t, _, _ in got.spans), "the query's spans were exported"
        up.send_signal(signal.SIGTERM)
        printed, _ = up.communicate(timeout=60)
        assert up.returncode == 0
        pid = int(re.findall(r"exporting traces over OTLP \(pid (\d+)\)", printed)[0])
        with pytest.raises(ProcessLookupError):  # stopped and reaped with the stack
            os.kill(pid, 0)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        got.server.shutdown()


def test_an_exporter_started_before_the_stream_waits_for_it(nats_server: NatsServer) -> None:
    """The exporter may not create the trace stream: started first, it waits for a
    controller to create it, then binds; with no stream at all it gives up with a typed error."""
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        waiting = TraceExporter(bus, OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces"))
        with pytest.raises(TraceStreamMissing):
            bus.call(waiting.open(stream_wait_s=0.6), 10)
        assert waiting.counters["stream_waits"] >= 2

        exporter = TraceExporter(bus, OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces"))

        async def open_then_create() -> None:
            opening = asyncio.ensure_future(exporter.open(stream_wait_s=30))
            await asyncio.sleep(1.0)
            assert not opening.done()  # still waiting: there is no stream yet
            await ensure_trace_stream(bus, Subjects())
            await asyncio.wait_for(opening, 15)
            await exporter.close()

        bus.call(open_then_create(), 30)
        assert exporter.counters["stream_waits"] >= 1
    finally:
        bus.stop()
