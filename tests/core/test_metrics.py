"""Prometheus metrics: the naming rules hold for every series, and a real Prometheus scraping
a running stack (nats-server, emulator, controller, worker and learner as processes) finds
the expected series with plausible values."""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from hieramas import metrics
from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.learner.process import LearnerProcess
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer, free_port
from hieramas.processes import spawn, terminate
from hieramas.wire.events import LlmCall, NodeModels, QueryDone, SupernodeRun

# Every label a series may carry: each takes values from a bounded set (config names, codes).
BOUNDED_LABELS = {
    "outcome", "code", "component", "event", "role", "status", "model", "kind", "endpoint",
    "state", "error_kind", "le",
}  # fmt: skip


class _Counters:
    def __init__(self, **counts: int) -> None:
        self.counters = collections.Counter(counts)


class _Gateway:
    def __init__(self) -> None:
        self.runs = {"q1": object(), "q2": object(), "q2-v1": object()}
        self.vote_runs = 1  # q2-v1 is one of a top-k vote's runs, not a query


class _Llm:
    def metrics(self) -> dict[str, dict[str, object]]:
        return {
            "emulator": {
                "calls": 3, "attempts": 4, "retries": 1, "cache_hits": 0, "in_flight": 1,
                "errors": {"timeout": 1}, "breaker": "open", "breaker_opened": 1,
            }
        }  # fmt: skip


class _Learner:
    """A learner service's state as the scrape reads it: its last update, lineage, stream."""

    def __init__(self) -> None:
        self.counters = collections.Counter({"episodes": 4, "rejected_no_item": 1})
        self.history = [{"mean_reward": 0.4, "accuracy": 0.5, "eval_accuracy": 0.75}]
        self.lineage = SimpleNamespace(heads=[1, 3])
        self.consumer = SimpleNamespace(position=lambda: None)
        self.bus = SimpleNamespace(call=lambda coro, timeout: SimpleNamespace(last_seq=10))
        self._seq = 7


def _populated() -> dict[str, Any]:
    """The registry's families after one of each event and one of each tracked source."""
    keep = [
        _Counters(**{"gateway.failed.timeout": 2, "rejected.bad_payload": 1, "received": 9}),
        _Counters(dropped=3, published=10),
        _Gateway(),
        _Llm(),
        _Learner(),
    ]
    for kind, obj in zip(("bus", "traces", "gateway", "llm", "learner"), keep, strict=True):
        metrics.track(kind, obj)
    served = metrics.ServedCounts()
    served.count("qwen3-8b", {"prompt_tokens": 5, "completion_tokens": 7})
    metrics.track("emulator", served)
    models = NodeModels(proposers=["a"], synthesizer="b")
    metrics.observe(
        [
            LlmCall(
                query_id="q", config_version=1, node="n", role="Critic", slot="p0",
                worker="w", model="qwen3-8b", model_id="qwen3-8b", endpoint="emulator",
                started=0.0, finished=0.5, outcome="ok", prompt_tokens=5,
                completion_tokens=7, cost_usd=0.001, latency_s=0.5,
            ),
            SupernodeRun(
                query_id="q", config_version=1, node="n", role="Critic", status="ok",
                models=models, latency_s=0.7,
            ),
            QueryDone(query_id="q", status="ok", latency_s=1.2, cost_usd=0.002),
        ]
    )  # fmt: skip
    families = {f.name: f for f in metrics.REGISTRY.collect()}
    del keep  # weakly tracked: gone once dropped
    return families


def test_every_series_follows_the_naming_rules() -> None:
    families = _populated()
    ours = {n: f for n, f in families.items() if n.startswith("hieramas_")}
    assert {"hieramas_queries", "hieramas_llm_call_duration_seconds",
            "hieramas_trace_events_dropped", "hieramas_llm_breaker_state",
            "hieramas_queries_in_flight_queries", "hieramas_query_failures",
            "hieramas_rejected_messages", "hieramas_emulator_requests"} <= set(ours)  # fmt: skip
    for name, family in ours.items():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        else:
            assert name.endswith(metrics.UNIT_SUFFIXES), f"{name}: no unit suffix"
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS, (name, sample.labels)
    for family in families.values():
        assert all(
            "query_id" not in s.labels and "trace_id" not in s.labels for s in family.samples
        )


def test_tracked_state_is_read_at_scrape_time() -> None:
    families = _populated()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples["hieramas_query_failures_total", (("code", "timeout"),)] >= 2
    assert samples["hieramas_trace_events_dropped_total", ()] >= 3
    assert samples["hieramas_llm_breaker_state", (("endpoint", "emulator"), ("state", "open"))]
    assert samples["hieramas_queries_in_flight_queries", ()] >= 2
    key = ("hieramas_llm_tokens_total", (("kind", "completion"), ("model", "qwen3-8b")))
    assert samples[key] >= 7
    assert samples["hieramas_learner_policy_version", ()] == 3
    assert samples["hieramas_learner_consumer_lag_messages", ()] == 3
    assert samples["hieramas_learner_eval_accuracy_ratio", ()] == 0.75


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    names = {s.name for f in _populated().values() for s in f.samples}
    for family in metrics.REGISTRY.collect():  # histogram series may be empty: add their parts
        if family.type == "histogram":
            names |= {family.name + part for part in ("_bucket", "_sum", "_count")}
    dashboard = json.loads((DEPLOY / "grafana" / "hieramas.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\b(?:hieramas|process)_[a-z_]+", e)}
    assert used - names == set()
    for required in ("hieramas_queries_total", "hieramas_llm_call_duration_seconds_bucket",
                     "hieramas_learner_reward", "hieramas_llm_breaker_state"):  # fmt: skip
        assert required in used


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_shipped_scrape_config_is_valid() -> None:
    checked = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- a real Prometheus scraping a real stack ------------------------------------------------

PROMETHEUS = shutil.which("prometheus")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return spawn(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _wait_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or text not in path.read_text(errors="replace"):
        assert process.poll() is None, f"{path.name}: exited\n{path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{path.name}: no {text!r}"
        time.sleep(0.1)


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert reply["status"] == "success", reply
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


def _value(prom: str, expr: str, timeout: float = 30) -> float:
    """The single value of ``expr`` once Prometheus has it (scrapes come every second)."""
    deadline = time.monotonic() + timeout
    while not (result := _query(prom, expr)):
        assert time.monotonic() < deadline, f"Prometheus has no {expr}"
        time.sleep(0.5)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus package is not installed")
def test_prometheus_scrapes_every_process_of_a_running_stack(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    assert PROMETHEUS is not None
    hieramas = [sys.executable, "-m", "hieramas", "--log-level", "info"]
    ports = {job: free_port() for job in ("emulator", "controller", "worker", "learner")}
    emu_port = free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}/v1"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    learner: LearnerProcess | None = None
    bus: Bus | None = None
    try:
        processes.append(
            _spawn(
                [sys.executable, "-m", "hieramas.emulator", "serve", "--port", str(emu_port),
                 "--latency-scale", "0", "--metrics-port", str(ports["emulator"])],
                logs / "emulator.log",
            )
        )  # fmt: skip
        processes.append(
            _spawn(
                [*hieramas, "controller", "--nats", nats_server.url, "--emulator-url",
                 emulator_url, "--metrics-port", str(ports["controller"])],
                logs / "controller.log",
            )
        )  # fmt: skip
        processes.append(
            _spawn(
                [*hieramas, "worker", "--nats", nats_server.url,
                 "--metrics-port", str(ports["worker"])],
                logs / "worker.log",
            )
        )  # fmt: skip
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                        for job, port in ports.items()
                    ],
                }
            )
        )
        prom_port = free_port()
        processes.append(
            _spawn(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                logs / "prometheus.log",
            )
        )  # fmt: skip
        prom = f"http://127.0.0.1:{prom_port}"
        _wait_log(logs / "controller.log", "controller running", processes[1])
        _wait_log(logs / "worker.log", "worker.started", processes[2])
        _wait_log(logs / "emulator.log", "emulated LLM pool on", processes[0], timeout=120)

        text = resources.files("hieramas").joinpath("configs/mmlu.yaml").read_text()
        data = yaml.safe_load(text)
        data["planner"] = {"kind": "learned"}
        bus = Bus(NatsSettings(url=nats_server.url), sender="test-metrics").start()
        client = HieraClient(bus)
        bus.call(client.apply_config(yaml.safe_dump(data, sort_keys=False)), 30)
        options = ["--embedder", "hash-32", "--batch", "2", "--metrics-port", str(ports["learner"])]
        learner = LearnerProcess(nats_server.url, tmp_path / "learner", options)
        learner.start(wait="running").wait_phase("running")
        answered = [
            bus.call(client.ask(f"Which gas do plants take in? ({i}) A) O2 B) CO2"), 90)
            for i in range(6)
        ]
        assert all(r["status"] == "ok" for r in answered), answered  # EMULATED LLMs

        for job in ports:  # every process is up and scraped
            assert _value(prom, f'up{{job="{job}"}}') == 1.0, job
        assert _value(prom, 'sum(hieramas_queries_total{job="controller",outcome="ok"})') == 6
        mean = _value(
            prom,
            'sum(hieramas_query_duration_seconds_sum{job="controller"})'
            ' / sum(hieramas_query_duration_seconds_count{job="controller"})',
        )
        assert 0 < mean < 60
        calls = _value(prom, 'sum(hieramas_llm_call_duration_seconds_count{job="worker"})')
        assert calls >= 6  # at least one per query
        assert _value(prom, 'sum(hieramas_supernode_duration_seconds_count{job="worker"})') >= 6
        tokens = _value(prom, 'sum(hieramas_llm_tokens_total{job="worker",kind="completion"})')
        assert tokens > 0
        assert _value(prom, 'sum(hieramas_llm_cost_usd_total{job="worker"})') > 0
        served = _value(prom, 'sum(hieramas_emulator_requests_total{status="200"})')
        assert served >= calls  # the emulator served every call the worker made
        assert _value(prom, 'sum(hieramas_llm_endpoint_calls_total{job="worker"})') >= calls
        closed = 'sum(hieramas_llm_breaker_state{job="worker",state="closed"})'
        assert _value(prom, closed) >= 1
        assert _value(prom, 'hieramas_queries_in_flight_queries{job="controller"}') == 0
        assert _value(prom, 'hieramas_trace_events_dropped_total{job="worker"}') == 0
        assert _value(prom, 'hieramas_trace_events_published_total{job="worker"}') > 0
        assert _value(prom, 'hieramas_learner_consumer_lag_messages{job="learner"}', 60) >= 0
        assert _value(prom, 'hieramas_learner_policy_version{job="learner"}', 60) >= 1
        assert _value(prom, 'process_cpu_seconds_total{job="controller"}') > 0
    finally:
        if bus is not None:
            bus.stop()
        if learner is not None:
            learner.stop()
        for process in reversed(processes):
            terminate(process, 10)


@pytest.mark.slow
def test_up_serves_metrics_for_itself_and_the_emulator(tmp_path: Path) -> None:
    """``hieramas up --metrics-port 0``: its own process and the emulator each serve /metrics
    on a port it prints; a query shows up in both."""
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as o, err.open("wb") as e:
        up = spawn(
            [sys.executable, "-m", "hieramas", "up", "--metrics-port", "0", "--no-learner"],
            stdin=subprocess.DEVNULL, stdout=o, stderr=e,
        )  # fmt: skip
    bus: Bus | None = None
    try:
        _wait_log(out, "metrics also on: emulator", up, timeout=120)
        text = out.read_text()
        nats_url = re.search(r"NATS (nats://\S+)", text)
        own = re.search(r"controller and workers metrics on port (\d+)", err.read_text())
        emulator = re.search(r"metrics also on: emulator (\d+)", text)
        assert nats_url and own and emulator, text + err.read_text()
        bus = Bus(NatsSettings(url=nats_url.group(1)), sender="test-up").start()
        result = bus.call(HieraClient(bus).ask("Which gas do plants take in? A) O2 B) CO2"), 60)
        assert result["status"] == "ok", result  # EMULATED LLMs
        deadline = time.monotonic() + 10
        while 'hieramas_queries_total{outcome="ok"} 1.0' not in (
            page := httpx.get(f"http://127.0.0.1:{own.group(1)}/metrics", timeout=5).text
        ):
            assert time.monotonic() < deadline, page[-2000:]
            time.sleep(0.2)
        assert "hieramas_llm_call_duration_seconds_bucket" in page
        served = httpx.get(f"http://127.0.0.1:{emulator.group(1)}/metrics", timeout=5).text
        assert 'hieramas_emulator_requests_total{model="' in served
    finally:
        if bus is not None:
            bus.stop()
        terminate(up, 20)
