"""`hieramas explain`: a real query asked with `hieramas ask`, then explained from the trace
stream by the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, config_yaml, node

HIERAMAS = [sys.executable, "-m", "hieramas"]
ENV = {**os.environ, "COLUMNS": "200"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIERAMAS, *args], capture_output=True, text=True, timeout=120, env=ENV)


def _explained(query_id: str, url: str) -> dict[str, Any]:
    """The JSON explanation, once the query's own event is in the stream (published in the
    background, after the answer)."""
    deadline = time.monotonic() + 60
    while True:
        done = _run("explain", query_id, "--nats", url, "--json")
        if done.returncode == 0:
            doc: dict[str, Any] = json.loads(done.stdout)
            if doc["query"] is not None and doc["decision"] is not None:
                return doc
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.3)


def test_ask_then_explain_a_query(nats_server: NatsServer, llm_url: str) -> None:
    url = nats_server.url
    with Stack(nats_url=url, workers=1) as stack:
        apply_config(
            stack,
            config_yaml(
                llm_url,
                {
                    "a": node("Critic", ["fixed:A", "fail"], "fixed:A"),
                    "b": node("Lawyer", ["slow:0.3"], "fixed:A"),
                },
                [("a", "b")],
            ),
        )
        asked = _run("ask", "--nats", url, "Which option?")
        assert asked.returncode == 0, asked.stderr
        found = re.search(r"query=(\w+)", asked.stderr)
        assert found, asked.stderr
        query_id = found.group(1)
        assert f"hieramas explain {query_id} --nats URL" in asked.stderr

        doc = _explained(query_id, url)
        assert doc["query_id"] == query_id and doc["query"]["status"] == "ok"
        assert doc["plan"]["assignment"]["proposers"] == {
            "a": ["fixed:A", "fail"],
            "b": ["slow:0.3"],
        }
        assert doc["plan"]["edges"] == [["a", "b"]]
        assert {n["node"]: n["answer"] for n in doc["nodes"]} == {"a": "A", "b": "A"}
        assert sum(n["cost_usd"] for n in doc["nodes"]) > 0
        failed = [c for c in doc["calls"] if c["outcome"] != "ok"]
        assert [(c["node"], c["slot"], c["model"]) for c in failed] == [("a", "p1", "fail")]
        assert any("a/p1 fail" in f for f in doc["failures"]), doc["failures"]
        # b waited for a (the edge), and b's synthesizer for its slow proposer
        path = doc["critical_path"]
        assert path.index("a/synth") < path.index("b/p0") < path.index("b/synth"), path
        assert {c["node"] + "/" + c["slot"] for c in doc["calls"] if c["critical"]} == set(path)
        slow = next(c for c in doc["calls"] if c["model"] == "slow:0.3")
        assert slow["latency_s"] >= 0.29  # the event loop's clock is coarser than the sleep

        text = _run("explain", query_id, "--nats", url)
        assert text.returncode == 0, text.stderr
        for part in ("plan", "DAG edges: a -> b", "LLM calls", "what failed", "a/p1 fail",
                     "critical path (Gantt)", "b/synth", "slow:0.3"):  # fmt: skip
            assert part in text.stdout, (part, text.stdout)

        unknown = _run("explain", "no-such-query", "--nats", url)
        assert unknown.returncode == 1
        assert "no trace events for query 'no-such-query'" in unknown.stderr
