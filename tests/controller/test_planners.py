"""The planner seam: chosen by the config or --planner, built in one registry, updated live,
heavy planners off the NATS loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from planning_support import OPTIONS, PROVIDER, SHARED, FakePolicy

from hieramas.controller.config import ConfigError, HieraConfig, PlannerConfig, parse_config
from hieramas.controller.learned import LearnedPlanner
from hieramas.controller.planner import Assignment, PlanRequest, StaticPlanner
from hieramas.controller.planners import (
    PLANNERS,
    PlannerError,
    make_planner,
    planner_kinds,
    register_planner,
)
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone
from support import apply_config, ask, client_of, config_yaml, node

TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _empty_provider() -> None:
    SHARED._policy = None  # each test publishes its own versions


def _config(llm_url: str, planner: str = "") -> str:
    return config_yaml(
        llm_url,
        {"a": node("Critic", ["fixed:A", "fixed:A"], "fixed:A"), "b": node("Doctor", ["fixed:A"], "fixed:A")},
        [("a", "b")],
        extra_llms=["slow:0.5"],
    ) + planner  # fmt: skip


def _query_events(stack: Stack) -> dict[str, QueryDone]:
    assert stack.bus is not None and stack.controller is not None
    stack.bus.call(stack.controller.traces.flush(), 10)
    events = stack.bus.call(replay(stack.bus, Subjects()), 10)
    return {e.query_id: e for e in events if isinstance(e, QueryDone)}


def test_the_config_names_its_planner_and_options_and_unknown_kinds_are_refused() -> None:
    url = "http://127.0.0.1:9/v1"
    cfg = parse_config(
        _config(url, f"planner: {{kind: learned, provider: '{PROVIDER}', top_n: 3}}\n")
    )
    assert cfg.planner is not None and cfg.planner.kind == "learned"
    assert cfg.planner.options == {"provider": PROVIDER, "top_n": 3}
    assert parse_config(_config(url)).planner is None
    with pytest.raises(ConfigError, match=r"planner.kind: unknown planner 'oracle' \(known: "):
        parse_config(_config(url, "planner: {kind: oracle}\n"))
    assert {"static", "learned"} <= set(planner_kinds())


def test_the_registry_builds_each_kind_and_says_why_one_cannot_be_built() -> None:
    assert isinstance(make_planner(PlannerConfig()), StaticPlanner)
    learned = make_planner(PlannerConfig(kind="learned", provider=PROVIDER, top_n=3))
    assert isinstance(learned, LearnedPlanner) and learned.heavy and learned.provider is SHARED
    assert OPTIONS == {"top_n": 3}  # the provider's own options
    assert (
        make_planner(PlannerConfig(kind="learned", provider=PROVIDER, heavy=False)).heavy is False
    )
    with pytest.raises(PlannerError, match=r"no policy provider 'nowhere\.at_all:provider'"):
        make_planner(PlannerConfig(kind="learned", provider="nowhere.at_all:provider"))
    with pytest.raises(PlannerError, match="unknown planner 'oracle'"):
        make_planner(PlannerConfig(kind="oracle"))


def test_a_learned_planner_plans_with_the_newest_version_live_and_in_flight_queries_keep_theirs(
    nats_server: NatsServer, llm_url: str
) -> None:
    spec = PlannerConfig(kind="learned", provider=PROVIDER)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        apply_config(stack, _config(llm_url))
        cold = ask(stack)  # no version published yet: the config's own assignment
        assert (cold["answer"], cold["planner"], cold["policy_version"]) == ("A", "learned", None)

        v1 = FakePolicy(1, "fixed:B", stack.bus)
        SHARED.publish(v1)
        first = ask(stack, item_id="mmlu/1")
        assert (first["answer"], first["policy_version"], first["sampled"]) == ("B", 1, False)
        [(request, on_loop)] = v1.asked
        assert not on_loop  # a learned planner is heavy: it plans in the thread pool
        assert (request.task_text, request.item_id, request.explore) == (
            "Which option?",
            "mmlu/1",
            False,
        )
        assert request.domain == "mmlu" and request.query_id == first["query_id"]

        v2 = FakePolicy(2, "slow:0.5")
        SHARED.publish(v2)
        assert stack.bus is not None
        in_flight = stack.bus.run(client_of(stack).ask("Which option?"))
        deadline = time.monotonic() + 10
        while not v2.asked and time.monotonic() < deadline:  # wait until it is planned
            time.sleep(0.01)
        SHARED.publish(FakePolicy(3, "fixed:C"))
        assert not in_flight.done()  # still running its slow calls (two nodes of 0.5 s)
        after = ask(stack, explore=True)
        started_before = in_flight.result(30)
        assert (started_before["answer"], started_before["policy_version"]) == ("A", 2)
        assert (after["answer"], after["policy_version"], after["sampled"]) == ("C", 3, True)

        events = _query_events(stack)
        planner = stack.controller.gateway._planners  # type: ignore[union-attr]
        [learned] = [p.result() for p in planner.values()]
    traced = events[after["query_id"]]
    assert (traced.planner, traced.policy_version, traced.sampled) == ("learned", 3, True)
    assert traced.assignment is not None
    assert traced.assignment.proposers == {"a": ["fixed:C", "fixed:C"], "b": ["fixed:C"]}
    # what a learner trains on: the text the policy read, and how the plan was sampled
    assert (traced.task_text, traced.temperature, traced.log_probs) == (
        "Which option?", 1.5, [-0.5] * 5,
    )  # fmt: skip
    greedy = events[first["query_id"]]
    assert (greedy.task_text, greedy.temperature, greedy.log_probs) == ("Which option?", None, None)
    assert events[cold["query_id"]].policy_version is None
    assert events[cold["query_id"]].task_text is None  # static plans keep the stream small
    assert isinstance(learned, LearnedPlanner)
    assert learned.counters == {"no_policy": 1, "greedy": 2, "sampled": 1}


def test_a_policy_that_does_not_fit_the_config_leaves_its_queries_to_the_static_plan(
    nats_server: NatsServer, llm_url: str
) -> None:
    with Stack(
        nats_url=nats_server.url, planner=PlannerConfig(kind="learned", provider=PROVIDER)
    ) as stack:
        apply_config(stack, _config(llm_url))
        SHARED.publish(FakePolicy(4, "fixed:B", fits=False))
        result = ask(stack, explore=True)
        planner = stack.controller.gateway._planners  # type: ignore[union-attr]
        [learned] = [p.result() for p in planner.values()]
    assert (result["status"], result["answer"], result["policy_version"]) == ("ok", "A", None)
    assert result["sampled"] is False
    assert isinstance(learned, LearnedPlanner) and learned.counters == {"mismatch": 1}


def test_each_config_version_uses_its_own_planner_and_a_light_one_plans_on_the_loop(
    stack: Stack, llm_url: str
) -> None:
    seen: list[bool] = []

    class Inline(StaticPlanner):
        kind = "inline-test"

        def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
            assert stack.bus is not None
            seen.append(stack.bus.in_loop())
            return super().assign(config, request)

    register_planner("inline-test", lambda spec: Inline())
    try:
        SHARED.publish(FakePolicy(7, "fixed:B"))
        learned = apply_config(
            stack, _config(llm_url, f"planner: {{kind: learned, provider: '{PROVIDER}'}}\n")
        )
        inline = apply_config(stack, _config(llm_url, "planner: {kind: inline-test}\n"))
        static = apply_config(stack, _config(llm_url))
        results = [ask(stack, config_version=v) for v in (learned, inline, static)]
    finally:
        del PLANNERS["inline-test"]
    assert [(r["planner"], r["policy_version"], r["answer"]) for r in results] == [
        ("learned", 7, "B"),
        ("inline-test", None, "A"),
        ("static", None, "A"),
    ]
    assert seen == [True]  # not heavy: called on the loop, no thread hop


def test_a_planner_that_cannot_be_built_fails_its_queries_explicitly(
    stack: Stack, llm_url: str
) -> None:
    apply_config(
        stack, _config(llm_url, "planner: {kind: learned, provider: 'nowhere.at_all:x'}\n")
    )
    result = ask(stack)
    assert result["status"] == "bad_planner"
    assert "no policy provider 'nowhere.at_all:x'" in result["error"]
    assert stack.bus is not None and stack.bus.counters["gateway.failed.bad_planner"] == 1
    apply_config(stack, _config(llm_url))
    assert ask(stack)["status"] == "ok"


def test_a_stack_told_to_use_a_planner_it_cannot_build_does_not_start(
    nats_server: NatsServer,
) -> None:
    spec = PlannerConfig(kind="learned", provider="nowhere.at_all:x")
    with pytest.raises(PlannerError, match="no policy provider"):
        Stack(nats_url=nats_server.url, workers=0, planner=spec).start()


def test_the_controller_command_takes_its_planner_from_the_command_line(
    nats_server: NatsServer, llm_url: str
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    base = [sys.executable, "-m", "hieramas", "controller", "--nats", nats_server.url]
    bad = subprocess.run(
        [*base, "--planner", "oracle"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2 and "unknown planner 'oracle'" in bad.stderr
    unbuildable = subprocess.run(
        [*base, "--planner", "{kind: learned, provider: 'nowhere.at_all:x'}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert unbuildable.returncode == 2 and "no policy provider" in unbuildable.stderr
    controller = subprocess.Popen(
        [*base, "--planner", f"{{kind: learned, provider: '{PROVIDER}'}}"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert controller.stdout is not None
        assert controller.stdout.readline().strip() == "controller running"
        with Stack(nats_url=nats_server.url, controller=False) as workers:
            apply_config(workers, _config(llm_url))
            result = ask(workers)
    finally:
        controller.terminate()
        controller.wait(30)
    assert (result["status"], result["planner"], result["policy_version"]) == (
        "ok",
        "learned",
        None,
    )


def test_an_evaluation_records_the_policy_version_of_each_item(
    nats_server: NatsServer, llm_url: str
) -> None:
    from hieramas.evaluation import evaluate
    from hieramas.tasks.datasets import Item

    items = [
        Item(
            id=f"t/{i}",
            dataset="t",
            domain="mmlu",
            question="Which option?",
            answer="B",
            subject="s",
        )
        for i in range(3)
    ]
    spec = PlannerConfig(kind="learned", provider=PROVIDER)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        apply_config(stack, _config(llm_url))
        SHARED.publish(FakePolicy(5, "fixed:B"))
        assert stack.bus is not None
        report = stack.bus.call(evaluate(client_of(stack), items), 60)
    assert [(r.outcome, r.policy_version) for r in report.results] == [("correct", 5)] * 3
