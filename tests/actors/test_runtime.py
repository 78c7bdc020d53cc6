"""End-to-end queries through real NATS, real workers and a real HTTP LLM server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import yaml

from hieramas.controller.client import HieraClient
from hieramas.llm.loopback import LoopbackLLM
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind, Subjects
from support import apply_config, config_yaml, node


def ask(
    stack: Stack, yaml_text: str | None, text: str = "Which option?", **kw: Any
) -> dict[str, Any]:
    assert stack.bus is not None
    client = HieraClient(stack.bus)
    if yaml_text is not None:
        stack.bus.call(client.apply_config(yaml_text), 10)
    return stack.bus.call(client.ask(text, **kw), 60)


def impatient(yaml_text: str, model: str, timeout_s: float) -> str:
    """``yaml_text`` with ``model`` on an endpoint of its own (the same server) that gives up
    on a reply after ``timeout_s``."""
    data = yaml.safe_load(yaml_text)
    data["endpoints"]["impatient"] = {**data["endpoints"]["scripted"], "timeout_s": timeout_s}
    data["llms"][model]["endpoint"] = "impatient"
    return str(yaml.safe_dump(data, sort_keys=False))


def test_multi_supernode_dag_answers(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A", "fixed:B"], "fixed:A"),
            "critic": node("Critic", ["fixed:A"], "fixed:A"),
            "math": node("Mathematician", ["fixed:C", "fixed:A", "fixed:A"], "fixed:A"),
        },
        [("expert", "critic"), ("expert", "math"), ("critic", "math")],
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok", result
    assert result["answer"] == "A"
    assert result["decided_by"] == "agreement"
    assert set(result["nodes"]) == {"expert", "critic", "math"}
    assert result["config_version"] == 1
    assert result["cost_usd"] > 0
    math = result["nodes"]["math"]
    assert math["models"] == {
        "proposers": ["fixed:C", "fixed:A", "fixed:A"],
        "synthesizer": "fixed:A",
    }
    # the DAG order is respected: math starts after both of its predecessors finished
    assert math["started"] >= result["nodes"]["critic"]["finished"]
    assert math["started"] >= result["nodes"]["expert"]["finished"]


def test_disagreement_calls_the_decision_llm(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A"], "fixed:A"),
            "critic": node("Critic", ["fixed:B"], "fixed:B"),
        },
        decision="fixed:C",
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok"
    assert result["decided_by"] == "llm"
    assert result["answer"] == "C"
    assert result["decision"]["model"] == "fixed:C"


@pytest.mark.parametrize(
    ("decision", "timeout_s", "why"),
    [("fail", None, "(HTTP 500)"), ("slow:5", 0.3, "timeout: endpoint 'impatient'")],
    ids=["http-500", "timeout"],
)
def test_failing_decision_llm_fails_the_query_explicitly(
    stack: Stack, llm_url: str, decision: str, timeout_s: float | None, why: str
) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A"], "fixed:A"),
            "critic": node("Critic", ["fixed:B"], "fixed:B"),
        },
        decision=decision,
    )
    result = ask(stack, impatient(cfg, decision, timeout_s) if timeout_s else cfg)
    assert result["status"] == "error"
    assert (result["answer"], result["text"], result["decided_by"]) == (None, "", "llm")
    call = result["decision"]["call"]
    assert call["outcome"] == "error" and call["model"] == decision
    assert call["error"].startswith(f"{decision}: ") and why in call["error"]
    assert result["error"] == f"decision LLM failed: {call['error']}"
    assert result["failures"] == [f"decision: llm: {call['error']}"]
    # the supernodes' work is kept in the result
    assert {n: out["answer"] for n, out in result["nodes"].items()} == {
        "expert": "A",
        "critic": "B",
    }
    assert result["latency_s"] < 3.0
    assert ask(stack, cfg.replace(f"decision: {decision}", "decision: fixed:C"))["answer"] == "C"


def test_skipped_proposer_and_skipped_supernode(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["skip", "fixed:B"], "fixed:B"),
            "critic": node("Critic", ["fixed:A"], "skip"),
            "math": node("Mathematician", ["skip", "skip"], "fixed:B"),
        },
        [("critic", "math")],
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok", result
    assert result["skipped_nodes"] == ["critic"]
    assert set(result["nodes"]) == {"expert", "math"}
    expert_calls = result["nodes"]["expert"]["calls"]
    assert set(expert_calls) == {"p1", "synth"}  # slot 0 was skipped: no call
    assert set(result["nodes"]["math"]["calls"]) == {"synth"}  # synthesizer answered alone
    assert result["answer"] == "B"


def test_all_skipped_decision_answers_alone(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {"expert": node("Knowledgeable Expert", ["fixed:A"], "skip")},
        decision="fixed:C",
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok"
    assert result["decided_by"] == "alone_all_skipped"
    assert result["answer"] == "C"
    assert result["nodes"] == {}


@pytest.mark.parametrize(
    ("style", "instruction"),
    [("direct", "without explanation"), ("cot", "Think step by step")],
)
def test_alone_prompt_style_reaches_the_decision_llm(
    stack: Stack, llm_url: str, style: str, instruction: str
) -> None:
    cfg = config_yaml(
        llm_url, {"expert": node("Knowledgeable Expert", ["skip"], "skip")}, decision="echo"
    )
    cfg += f"alone_prompt: {style}\n"
    result = ask(stack, cfg, text="What is 2 + 2?")
    assert result["status"] == "ok", result
    assert result["decided_by"] == "alone_all_skipped"
    assert instruction in result["text"] and "What is 2 + 2?" in result["text"]


def test_failing_proposer_is_reported_and_the_node_proceeds(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {"expert": node("Knowledgeable Expert", ["fail", "fixed:B"], "fixed:B")},
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok"
    assert result["answer"] == "B"
    expert = result["nodes"]["expert"]
    assert expert["calls"]["p0"]["outcome"] == "error"
    assert any("p0" in f and "500" in f for f in result["failures"]), result["failures"]


def test_timed_out_proposer_is_reported_and_the_node_proceeds(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {"expert": node("Knowledgeable Expert", ["slow:5", "fixed:B"], "fixed:B")},
    )
    result = ask(stack, impatient(cfg, "slow:5", 0.3))
    assert result["status"] == "ok", result
    assert result["answer"] == "B"
    assert result["latency_s"] < 3.0  # it went on without the 5 s reply
    expert = result["nodes"]["expert"]
    assert expert["status"] == "ok"
    assert expert["calls"]["p1"]["outcome"] == "ok"
    p0 = expert["calls"]["p0"]
    assert (p0["outcome"], p0["error_kind"]) == ("error", "timeout")
    assert result["failures"] == [f"expert: p0: {p0['error']}"]
    assert p0["error"].startswith("slow:5: timeout: endpoint 'impatient'")
    assert "timeout_s=0.3" in p0["error"]


def test_failing_synthesizer_fails_the_node_but_not_the_query(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A"], "fail"),
            "critic": node("Critic", ["fixed:B"], "fixed:B"),
        },
        [("expert", "critic")],
    )
    result = ask(stack, cfg)
    assert result["nodes"]["expert"]["status"] == "error"
    assert "synthesizer failed" in result["nodes"]["expert"]["error"]
    assert result["status"] == "ok"
    assert result["answer"] == "B"


def test_query_deadline_gives_an_explicit_timeout(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(llm_url, {"expert": node("Knowledgeable Expert", ["slow:5"], "fixed:A")})
    result = ask(stack, cfg, timeout_s=1.0)
    assert result["status"] == "timeout"
    assert "deadline" in result["error"]
    assert result["latency_s"] < 3.0


def test_no_config_is_an_explicit_error(stack: Stack) -> None:
    result = ask(stack, None)
    assert result["status"] == "no_config"


def test_empty_query_is_rejected(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(llm_url, {"expert": node("Knowledgeable Expert", ["fixed:A"], "fixed:A")})
    result = ask(stack, cfg, text="   ")
    assert result["status"] == "bad_query"


def test_vote_and_pass_pseudo_synthesizers_and_vote_decision(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "sc": node("Knowledgeable Expert", ["fixed:B", "fixed:A", "fixed:A"], "vote"),
            "solo": node("Critic", ["fixed:C"], "pass"),
            "other": node("Doctor", ["fixed:A"], "pass"),
        },
        decision="vote",
    )
    result = ask(stack, cfg)
    assert result["status"] == "ok", result
    sc = result["nodes"]["sc"]
    assert sc["answer"] == "A"
    assert sc["calls"]["synth"]["pseudo"] is True and sc["calls"]["synth"]["cost_usd"] == 0
    assert result["nodes"]["solo"]["answer"] == "C"
    assert result["decided_by"] == "vote"
    assert result["answer"] == "A"  # A (sc, other) beats C (solo)
    assert result["decision"]["call"] is None  # no decision LLM call


def test_reserved_pseudo_llm_names_are_rejected() -> None:
    from hieramas.controller.config import ConfigError, parse_config

    text = config_yaml("http://127.0.0.1:9/v1", {"a": node("Critic", ["fixed:A"], "fixed:A")})
    text = text.replace("fixed:C:", "vote:", 1)
    with pytest.raises(ConfigError, match="'vote' is reserved"):
        parse_config(text)


def test_placement_routes_nodes_to_their_worker_group(
    nats_server: NatsServer, llm_url: str
) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A", "fixed:A"], "fixed:A"),
            "critic": node("Critic", ["fixed:A"], "fixed:A"),
        },
        [("expert", "critic")],
    )
    cfg += "placement:\n  gpu: [critic, decision]\n"
    with (
        Stack(nats_url=nats_server.url, workers=1) as general,
        Stack(nats_url=nats_server.url, controller=False, group="gpu") as gpu,
    ):
        result = ask(general, cfg)
        general_id, gpu_id = general.workers[0].worker_id, gpu.workers[0].worker_id
        calls = result["nodes"]["critic"]["calls"]
        assert result["status"] == "ok", result
        assert result["nodes"]["critic"]["worker"] == gpu_id
        assert result["nodes"]["expert"]["worker"] == general_id
        assert result["decision"]["worker"] == gpu_id
        assert {c["worker"] for c in calls.values()} == {gpu_id}  # its slots ran there too
        assert {c["worker"] for c in result["nodes"]["expert"]["calls"].values()} == {general_id}
    # with no worker in the group, the query fails explicitly instead of waiting
    with Stack(nats_url=nats_server.url) as only_general:
        result = ask(only_general, None)
        assert result["status"] == "no_worker"
        assert "critic" in result["error"] or "decision" in result["error"]


def _watch(stack: Stack) -> dict[str, list[str]]:
    """Record the query id of every activation and every ``node.routes`` message on the bus."""
    assert stack.bus is not None
    seen: dict[str, list[str]] = {"activate": [], "routes": []}

    def on(envelope: Envelope, reply: str | None) -> None:
        if envelope.kind is Kind.NODE_ACTIVATE:
            seen["activate"].append(envelope.query_id)
        elif envelope.kind is Kind.NODE_ROUTES:
            seen["routes"].append(envelope.query_id)

    subjects = Subjects()
    for subject in (
        subjects.all_activations(),
        subjects.activate("decision"),
        subjects.instance("*"),
    ):
        stack.bus.subscribe(subject, on)
    return seen


def test_one_worker_arms_a_whole_query_with_one_activation(stack: Stack, llm_url: str) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A"], "fixed:A"),
            "critic": node("Critic", ["fixed:A"], "fixed:A"),
            "math": node("Mathematician", ["fixed:A"], "fixed:A"),
        },
        [("expert", "critic"), ("critic", "math")],
    )
    seen = _watch(stack)
    result = ask(stack, cfg)
    assert result["status"] == "ok", result
    assert seen["activate"] == [result["query_id"]]  # one for all four nodes
    assert seen["routes"] == []  # it started at once: every route was its own inbox
    assert result["nodes"]["math"]["started"] >= result["nodes"]["critic"]["finished"]


def test_nodes_split_across_workers_are_armed_in_rounds_and_routed(
    nats_server: NatsServer, llm_url: str
) -> None:
    cfg = config_yaml(
        llm_url,
        {
            "expert": node("Knowledgeable Expert", ["fixed:A", "fixed:A"], "fixed:A"),
            "critic": node("Critic", ["fixed:A"], "fixed:A"),
            "math": node("Mathematician", ["fixed:A"], "fixed:A"),
        },
        [("expert", "critic"), ("expert", "math")],
    )
    with (
        Stack(nats_url=nats_server.url, nodes={"expert", "decision"}) as first,
        Stack(nats_url=nats_server.url, controller=False, nodes={"critic", "math"}) as second,
    ):
        seen = _watch(first)
        result = ask(first, cfg)
        assert result["status"] == "ok", result
        a, b = first.workers[0].worker_id, second.workers[0].worker_id
        assert result["nodes"]["expert"]["worker"] == a
        assert result["decision"]["worker"] == a
        assert result["nodes"]["critic"]["worker"] == b
        assert result["nodes"]["math"]["worker"] == b
        assert result["nodes"]["math"]["started"] >= result["nodes"]["expert"]["finished"]
        # two rounds of arming (the first worker hosts expert and decision only), then
        # one routes message per worker, not one per node
        assert seen["activate"] == [result["query_id"]] * 2
        assert seen["routes"] == [result["query_id"]] * 2


def _activation(cfg: str, *, age_s: float) -> Envelope:
    """A whole-query activation as the gateway builds it, sent ``age_s`` seconds ago."""
    from hieramas.controller.config import parse_config
    from hieramas.controller.planner import PlanRequest, StaticPlanner, build_plan

    config = parse_config(cfg)
    query_id = f"stale-{age_s}"
    plan = build_plan(
        config, 1, StaticPlanner().assign(config, PlanRequest("Which option?")),
        query_id=query_id, task_text="Which option?",
    )  # fmt: skip
    nodes = [*plan.nodes, "decision"]
    payload = {"plan": plan.to_wire(), "node": nodes[0], "nodes": nodes, "gateway": "hm.gwi.x"}
    return Envelope(
        kind=Kind.NODE_ACTIVATE,
        payload=payload,
        query_id=query_id,
        trace_id=query_id,
        config_version=1,
        ts=time.time() - age_s,
    )


def test_a_stale_whole_query_activation_waits_for_routes_instead_of_starting(
    stack: Stack,
) -> None:
    with LoopbackLLM(record=False) as llm:
        cfg = config_yaml(llm.base_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")})
        assert apply_config(stack, cfg) == 1  # workers find the version's endpoints in the store
        assert stack.bus is not None
        subject = Subjects().activate("expert")
        stale = stack.bus.call(stack.bus.arequest(subject, _activation(cfg, age_s=10), 5), 10)
        assert stale.payload["nodes"] == ["expert", "decision"]
        assert stale.payload["started"] is False  # the gateway may have moved on: no LLM calls
        time.sleep(0.3)
        assert httpx.get(llm.base_url.removesuffix("/v1") + "/stats").json()["calls"] == 0
        fresh = stack.bus.call(stack.bus.arequest(subject, _activation(cfg, age_s=0), 5), 10)
        assert fresh.payload["started"] is True
        deadline = time.monotonic() + 10
        while httpx.get(llm.base_url.removesuffix("/v1") + "/stats").json()["calls"] < 2:
            assert time.monotonic() < deadline, "the fresh activation did not start the query"
            time.sleep(0.05)


CODE_TASK = '''def triple(x: int) -> int:
    """Return three times x.
    >>> triple(2)
    6
    >>> triple(-1)
    -3
    """
'''


def _code_llm(body: str) -> str:
    return f"fixed:\n```python\ndef triple(x):\n    return {body}\n```"


def test_code_candidates_vote_by_behaviour_in_the_sandbox(stack: Stack, llm_url: str) -> None:
    wrong, right_a, right_b = _code_llm("x + 4"), _code_llm("3 * x"), _code_llm("x + x + x")
    cfg = config_yaml(
        llm_url,
        {"sc": node("Programming Expert", [wrong, right_a, right_b], "vote")},
        decision="vote",
        domain="humaneval",
        extra_llms=[wrong, right_a, right_b],
    )
    result = ask(stack, cfg, text=CODE_TASK)
    assert result["status"] == "ok", result
    sc = result["nodes"]["sc"]
    assert "3 * x" in sc["text"]  # text plurality would keep the first (wrong) sample
    assert sc["vote"] == {
        "method": "behaviour", "probes": 2, "runnable": 3, "cluster_size": 2,
        "examples_passed": 2, "examples_stated": 2,
    }  # fmt: skip


def test_decision_votes_code_by_behaviour(stack: Stack, llm_url: str) -> None:
    wrong, right = _code_llm("x - 1"), _code_llm("x * 3")
    cfg = config_yaml(
        llm_url,
        {
            "a": node("Programming Expert", [wrong], "pass"),
            "b": node("Programming Expert", [right], "pass"),
        },
        decision="vote",
        domain="humaneval",
        extra_llms=[wrong, right],
    )
    result = ask(stack, cfg, text=CODE_TASK)
    assert result["status"] == "ok", result
    assert result["decided_by"] == "vote"
    assert "x * 3" in result["text"]
    assert result["decision"]["vote"]["method"] == "behaviour"
