"""The gateway answers every query: a bug or a result too big for NATS is an explicit error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hieramas.controller.gateway import Gateway
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, ask, config_yaml, node

PROMPT_S = 5.0  # far below the client's own timeout (timeout_s + 5 s)
SMALL_PAYLOAD = 64 * 1024


def _gateway(stack: Stack) -> Gateway:
    assert stack.controller is not None
    return stack.controller.gateway


def _counter(stack: Stack, name: str) -> int:
    assert stack.bus is not None
    return stack.bus.counters[name]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom: a bug in the gateway")


@pytest.mark.parametrize(
    ("target", "version"),
    [("planner.assign", 0), ("_result", 1)],  # before the query has a run, and after
    ids=["planning", "collecting"],
)
def test_a_gateway_bug_gets_an_internal_error_promptly_and_the_next_query_is_served(
    stack: Stack, llm_url: str, monkeypatch: pytest.MonkeyPatch, target: str, version: int
) -> None:
    apply_config(stack, config_yaml(llm_url, {"expert": node("Critic", ["fixed:B"], "fixed:B")}))
    owner, _, name = target.rpartition(".")
    gateway = _gateway(stack)
    monkeypatch.setattr(getattr(gateway, owner) if owner else gateway, name, _boom)

    started = time.monotonic()
    result = ask(stack, timeout_s=10)
    assert time.monotonic() - started < PROMPT_S
    assert result["status"] == "internal"
    assert "RuntimeError: boom: a bug in the gateway" in result["error"]
    assert result["answer"] is None and result["config_version"] == version
    assert _counter(stack, "gateway.failed.internal") == 1

    monkeypatch.undo()
    result = ask(stack)
    assert (result["status"], result["answer"]) == ("ok", "B")


def test_a_result_over_the_payload_limit_is_an_explicit_oversize_error(llm_url: str) -> None:
    """Each node's 25 kB output fits a 64 kB message; the result carrying all three does not."""
    big = "big:25000"
    nodes = {
        name: node(role, ["fixed:B"], big)
        for name, role in (("a", "Critic"), ("b", "Doctor"), ("c", "Lawyer"))
    }
    with NatsServer(max_payload=SMALL_PAYLOAD) as server, Stack(nats_url=server.url) as stack:
        apply_config(stack, config_yaml(llm_url, nodes, decision="fixed:A", extra_llms=[big]))
        started = time.monotonic()
        result = ask(stack, timeout_s=20)
        assert time.monotonic() - started < PROMPT_S
        assert result["status"] == "oversize"
        assert "the query result cannot be sent" in result["error"]
        assert f"over the {SMALL_PAYLOAD}-byte maximum" in result["error"]
        assert result["answer"] is None and "nodes" not in result
        assert result["config_version"] == 1 and result["cost_usd"] > 0  # the totals are kept
        assert _counter(stack, "gateway.failed.oversize") == 1
        assert _counter(stack, "rejected.oversize") == 0  # no node output was too big

        small = {"a": node("Critic", ["fixed:B"], "fixed:B")}
        assert apply_config(stack, config_yaml(llm_url, small)) == 2
        assert ask(stack)["status"] == "ok"


def test_a_query_refused_with_an_error_envelope_is_still_a_result(
    stack: Stack, llm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus answers a handler that raises with an ``error`` envelope; ``ask`` turns it
    into a result with that status, as it does every other failure."""
    apply_config(stack, config_yaml(llm_url, {"expert": node("Critic", ["fixed:B"], "fixed:B")}))
    monkeypatch.setattr(_gateway(stack), "_on_query", _boom)  # read at subscribe time: re-subscribe
    assert stack.bus is not None
    stack.bus.call(_gateway(stack).stop(), 10)
    stack.bus.call(_gateway(stack).start(), 10)

    result = ask(stack, timeout_s=10)
    assert result["status"] == "internal"
    assert "boom: a bug in the gateway" in result["error"]
    assert result["answer"] is None and result["query_id"]
    assert _counter(stack, "rejected.internal") == 1


def test_a_bug_while_reporting_a_failed_query_still_reports_the_failure(
    stack: Stack, llm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query times out, then building its full result fails too: the timeout arrives."""
    cfg = config_yaml(llm_url, {"expert": node("Critic", ["slow:5"], "fixed:B")}, query_timeout_s=1)
    apply_config(stack, cfg)
    monkeypatch.setattr(_gateway(stack), "_result", _boom)

    started = time.monotonic()
    result = ask(stack, timeout_s=1)
    assert time.monotonic() - started < PROMPT_S
    assert result["status"] == "timeout" and "deadline" in result["error"]
    assert result["answer"] is None and result["config_version"] == 1
    assert _counter(stack, "gateway.failed.timeout") == 1
    assert _counter(stack, "gateway.result_failed") == 1
