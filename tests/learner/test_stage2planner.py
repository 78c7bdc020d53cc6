"""The Stage-2 planner: Stage 1's LLMs, the classifier's DAG, and the runtime runs exactly the
scored edges; classifier versions come over NATS and a new one plans the next query."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from hieramas.controller.config import HieraConfig, PlannerConfig, parse_config
from hieramas.controller.planners import make_planner
from hieramas.controller.vote import vote as vote_of
from hieramas.learner.checkpoint import CheckpointMeta, decode_checkpoint, encode_checkpoint
from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.dagcheckpoint import ClassifierMeta, decode_classifier, encode_classifier
from hieramas.learner.dagplanning import TopologyChooser
from hieramas.learner.dags import generate_active, is_acyclic
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.provider import LoadedPolicy
from hieramas.learner.roleskip import skip_roles
from hieramas.learner.store import PolicyStore
from hieramas.learner.topologyplanner import Stage2Planner, classifier_store
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone, SupernodeRun
from support import apply_config, ask, config_yaml, node

NAMES = ["n0", "n1", "n2", "n3", "n4"]
ROLES = ["Critic", "Doctor", "Lawyer", "Historian", "Economist"]
M = 60


def _config_text(url: str) -> str:
    nodes = {n: node(ROLES[i], ["fixed:A", "fixed:B"], "fixed:C") for i, n in enumerate(NAMES)}
    doc = yaml.safe_load(config_yaml(url, nodes, [], query_timeout_s=30))
    doc["llms"] = {k: v for k, v in doc["llms"].items() if k.startswith("fixed:")}
    return str(yaml.safe_dump(doc, sort_keys=False))


def _policy_blob(config: HieraConfig) -> bytes:
    policy = Policy.create(config, HashEmbedder(16), seed=1)
    with torch.no_grad():  # not uniform: greedy would then skip every node but one
        policy.net.score.weight.copy_(
            torch.randn(policy.net.score.weight.shape, generator=torch.Generator().manual_seed(0))
        )
    meta = CheckpointMeta(
        version=1, parent=None, config_name=config.name, config_version=1,
        layout=policy.layout.to_json(), embedder="hash-16", dim=16,
        hidden=policy.net.hidden, seed=1, temperature=1.0,
    )  # fmt: skip
    return encode_checkpoint(policy, meta)


def _classifier_blob(config: HieraConfig, version: int, seed: int) -> bytes:
    net = DagClassifierNet.create(config, HashEmbedder(16), hidden=16, seed=seed)
    meta = ClassifierMeta(
        version=version, parent=None, config_name=config.name, config_version=1,
        layout=net.layout.to_json(), embedder="hash-16", dim=16, seed=seed,
        net=net.hyper(), policy_version=1,
    )  # fmt: skip
    return encode_classifier(net, meta)


def _expected_edges(
    policy_blob: bytes, clf_blob: bytes, config: HieraConfig, text: str, seed: int
) -> set[tuple[str, str]]:
    """The top-1 DAG recomputed outside the controller from the published blobs."""
    planned = LoadedPolicy(decode_checkpoint(policy_blob), seed=None).planner.plan(text)
    assert planned.embedding is not None
    chooser = TopologyChooser(decode_classifier(clf_blob).net(config=config), candidates=M)
    choice = chooser.choose(
        torch.from_numpy(planned.embedding), planned.decision.actions, seed=seed
    )
    return set(choice.edges)


async def _publish(store: PolicyStore, blob: bytes) -> int:
    record = await store.open()
    return (await record.publish(lambda _v: (blob, {}), source="test")).version


def _planner(stack: Stack) -> Stage2Planner:
    assert stack.controller is not None
    [pending] = stack.controller.gateway._planners.values()
    planner = pending.result()
    assert isinstance(planner, Stage2Planner)
    return planner


def _serving_v1(stack: Stack, config: HieraConfig, text: str) -> Stage2Planner:
    """Publish policy v1 and classifier v1, apply the config, and wait until the planner has both."""
    assert stack.bus is not None
    stack.bus.call(_publish(PolicyStore(stack.bus), _policy_blob(config)), 10)
    stack.bus.call(_publish(classifier_store(stack.bus), _classifier_blob(config, 1, seed=1)), 10)
    apply_config(stack, text)
    planner = _planner(stack)
    deadline = time.monotonic() + 10
    while planner.policies.current() is None or planner.classifiers.current() is None:
        assert time.monotonic() < deadline, "policy v1 or classifier v1 was not loaded"
        time.sleep(0.05)
    return planner


def _done_events(stack: Stack) -> list[QueryDone]:
    assert stack.bus is not None and stack.controller is not None
    stack.bus.call(stack.controller.traces.flush(), 10)
    events: list[Any] = stack.bus.call(replay(stack.bus, Subjects()), 10)
    return [e for e in events if isinstance(e, QueryDone)]


def test_the_runtime_executes_the_chosen_dag_and_a_new_classifier_plans_the_next_query(
    nats_server: NatsServer, llm_url: str
) -> None:
    text = _config_text(llm_url)
    config = parse_config(text)
    policy_blob = _policy_blob(config)
    clf = {1: _classifier_blob(config, 1, seed=1), 2: _classifier_blob(config, 2, seed=2)}
    spec = PlannerConfig(kind="stage2", candidates=M, dag_seed=3)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        bus = stack.bus
        assert bus is not None
        assert bus.call(_publish(PolicyStore(bus), policy_blob), 10) == 1
        assert bus.call(_publish(classifier_store(bus), clf[1]), 10) == 1
        apply_config(stack, text)
        planner = _planner(stack)  # built at start, before either version existed
        deadline = time.monotonic() + 10
        while planner.policies.current() is None or planner.classifiers.current() is None:
            assert time.monotonic() < deadline, "policy v1 or classifier v1 was not loaded"
            time.sleep(0.05)
        questions = [f"Question {i}: which option is right?" for i in range(4)]
        for q in questions:
            assert ask(stack, q)["status"] == "ok"
        assert planner.heavy and planner.counters["chosen"] == 4
        # a new classifier version is picked up live and plans the next query
        assert bus.call(_publish(classifier_store(bus), clf[2]), 10) == 2
        deadline = time.monotonic() + 10
        while (cur := planner.classifiers.current()) is None or cur.version != 2:
            assert time.monotonic() < deadline, "classifier v2 was not loaded"
            time.sleep(0.05)
        assert ask(stack, questions[0])["status"] == "ok"
        done = _done_events(stack)
    assert len(done) == 5
    versions = [v for v, _ in planner.recent.values()]
    assert versions == [1, 1, 1, 1, 2]
    nonempty = 0
    for event, (version, choice) in zip(done, planner.recent.values(), strict=True):
        assert event.policy_version == 1 and event.planner == "stage2"
        assert event.task_text is not None
        executed = set(map(tuple, event.edges))
        # the trace says which classifier chose the DAG among how many, with what score
        assert event.topology is not None
        assert event.topology.classifier_version == version
        assert event.topology.candidates == len(choice.scores) <= M
        assert event.topology.rank == 1 and event.vote is None  # vote_k 1: one DAG ran
        assert event.topology.score == pytest.approx(float(choice.scores.max()))
        # the executed edges are the scored top-1's, recomputed independently from the blobs
        assert executed == set(choice.edges)
        seed = planner.seed_for(event.task_text)
        assert executed == _expected_edges(policy_blob, clf[version], config, event.task_text, seed)
        nonempty += bool(executed)
    assert nonempty >= 3  # the DAGs are real ones, not the config's (empty) edges
    # the same question under v1 and v2: same candidates, scored by different nets
    chosen = [c for _, c in planner.recent.values()]
    first, last = chosen[0], chosen[-1]
    assert (first.candidates.adjacency == last.candidates.adjacency).all()
    assert not (first.scores == last.scores).all()


def test_without_a_classifier_it_keeps_stage_one_on_the_configs_edges() -> None:
    planner = make_planner(PlannerConfig(kind="stage2", candidates=10, mode="greedy"))
    assert isinstance(planner, Stage2Planner) and planner.heavy
    with pytest.raises(Exception, match="unknown policy provider option"):
        make_planner(PlannerConfig(kind="stage2", bogus=1))
    voting = make_planner(PlannerConfig(kind="stage2", vote_k=3))
    assert isinstance(voting, Stage2Planner) and voting.vote_k == 3 and planner.vote_k == 1
    assert voting.classifiers._chooser["top_k"] == 3  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="vote_k"):
        make_planner(PlannerConfig(kind="stage2", vote_k=0))


def test_candidates_are_drawn_over_the_nodes_that_run() -> None:
    active = np.array([True, False, True, True, False, True])
    adj = generate_active(active, 30, seed=4)
    assert len(adj) == 30 and len({a.tobytes() for a in adj}) == 30  # distinct
    assert not adj[:, ~active, :].any() and not adj[:, :, ~active].any()
    sub = adj[:, active][:, :, active]
    for a in sub:
        assert is_acyclic(a)
        # connected over the active nodes: one root, every other node has a predecessor
        assert (a.sum(axis=0) == 0).sum() == 1
    one = generate_active(np.array([False, True, False]), 5, seed=0)
    assert one.shape == (1, 3, 3) and not one.any()


class _FixedLogits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.logits[None]


def test_role_skipping_drops_the_supernodes_leaning_most_to_skip_and_keeps_one() -> None:
    config = parse_config(_config_text("http://127.0.0.1:9/v1"))
    policy = Policy.create(config, HashEmbedder(16), seed=1)
    layout = policy.layout
    skip, a = layout.action_index("skip"), layout.action_index("fixed:A")
    n_actions = len(layout.actions)
    synth = {slot.node: s for s, slot in enumerate(layout.slots) if slot.kind == "synthesizer"}
    logits = torch.zeros(len(layout.slots), n_actions)
    # P(skip) of n0 > n3 > n1 above uniform; n2 below; n4 already skipped
    for name, bias in {"n0": 4.0, "n3": 3.0, "n1": 1.0, "n2": -3.0}.items():
        logits[synth[name], skip] = bias
    actions = [a] * len(layout.slots)
    actions[synth["n4"]] = skip
    policy.net = _FixedLogits(logits)  # type: ignore[assignment]
    q = torch.zeros(16)

    def skipped(k: int) -> set[str]:
        out = skip_roles(policy, q, actions, k)
        return {n for n, s in synth.items() if out[s] == skip} - {"n4"}

    assert skipped(0) == set()
    assert skipped(1) == {"n0"}
    assert skipped(2) == {"n0", "n3"}
    assert skipped(10) == {"n0", "n3", "n1"}  # n2 does not lean to skip
    logits[synth["n2"], skip] = 2.0  # now all four lean: one answering supernode stays
    assert skipped(10) == {"n0", "n3", "n2"}
    # a policy that never could skip a synthesizer never learned those scores
    policy.layout = replace(layout, options=replace(layout.options, synthesizer_skip=False))
    assert skipped(10) == set()


def test_vote_k_runs_the_k_best_scored_dags_as_child_runs_and_answers_with_their_vote(
    nats_server: NatsServer, llm_url: str
) -> None:
    text = _config_text(llm_url)
    config = parse_config(text)
    spec = PlannerConfig(kind="stage2", candidates=M, dag_seed=3, vote_k=3)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        bus = stack.bus
        assert bus is not None
        planner = _serving_v1(stack, config, text)
        results = [ask(stack, f"Question {i}: which option is right?") for i in range(2)]
        assert bus.counters["gateway.voted"] == 2
        assert stack.controller is not None and not stack.controller.gateway.runs
        assert stack.controller.gateway.vote_runs == 0  # in-flight counts queries, not runs
        bus.call(stack.controller.traces.flush(), 10)
        events: list[Any] = bus.call(replay(bus, Subjects()), 10)
    assert planner.vote_k == 3 and planner.counters["chosen"] == 2
    done = [e for e in events if isinstance(e, QueryDone)]
    assert len(done) == 2  # one query event per query, none per child run
    nodes_of: dict[str, dict[str, SupernodeRun]] = {}
    for e in events:
        if isinstance(e, SupernodeRun):
            nodes_of.setdefault(e.query_id, {})[e.node] = e
    for result, event in zip(results, done, strict=True):
        assert result["status"] == "ok" and result["query_id"] == event.query_id
        _version, choice = planner.recent[event.query_id]
        vote = event.vote
        assert vote is not None and [r.rank for r in vote.runs] == [1, 2, 3]
        assert len({r.run_id for r in vote.runs} | {event.query_id}) == 4  # distinct ids
        for run, i in zip(vote.runs, choice.ranked[:3], strict=True):
            # each run executed exactly the DAG scored at its rank
            assert set(map(tuple, run.edges)) == set(choice.candidates.edges(i))
            assert run.score == pytest.approx(float(choice.scores[i]))
            ran = nodes_of[run.run_id]  # its workers ran it under its own id
            for src, dst in run.edges:  # along the edges: a node starts after its preds
                started = ran[dst].started
                assert started is not None and ran[src].finished <= started
        assert len({frozenset(map(tuple, r.edges)) for r in vote.runs}) == 3
        assert event.query_id not in nodes_of
        # the answer is the vote's (controller.vote's rule), its cost every run's, latency the slowest
        ballots = [{"status": r.status, "answer": r.answer} for r in vote.runs]
        assert vote.chosen == vote_of(ballots) + 1  # type: ignore[operator]
        assert result["answer"] == vote.runs[vote.chosen - 1].answer == event.answer
        assert result["winner_rank"] == vote.chosen and result["voters"] == 3
        assert result["cost_usd"] == pytest.approx(sum(r.cost_usd for r in vote.runs))
        assert result["cost_usd"] > max(r.cost_usd for r in vote.runs) > 0
        assert result["latency_s"] == pytest.approx(max(r.latency_s for r in vote.runs))
        # the query event's DAG and topology are the chosen run's
        chosen = vote.runs[vote.chosen - 1]
        assert set(map(tuple, event.edges)) == set(map(tuple, chosen.edges))
        assert event.topology is not None and event.topology.rank == chosen.rank


def test_a_vote_whose_runs_all_hang_still_answers_with_an_explicit_error_in_time(
    nats_server: NatsServer, llm_url: str
) -> None:
    doc = yaml.safe_load(_config_text(llm_url))
    for spec_ in doc["llms"].values():  # same names (same policy layout), every call hangs
        spec_["model"] = "slow:5"
    text = str(yaml.safe_dump(doc, sort_keys=False))
    config = parse_config(text)
    spec = PlannerConfig(kind="stage2", candidates=M, dag_seed=3, vote_k=3)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        bus = stack.bus
        assert bus is not None
        _serving_v1(stack, config, text)
        hung = ask(stack, "Question 1: which option is right?", timeout_s=1.5)
        assert stack.controller is not None and not stack.controller.gateway.runs
    assert hung["status"] == "timeout" and hung["answer"] is None and hung["latency_s"] < 5
    assert "none of the 3 voting runs answered" in hung["error"]
    assert hung["vote"]["chosen"] is None and hung["winner_rank"] is None
    assert [r["status"] for r in hung["vote"]["runs"]] == ["timeout"] * 3
    assert bus.counters["gateway.vote_failed"] == 1
    assert bus.counters["gateway.vote_run_failed.timeout"] == 3
    assert bus.counters["gateway.failed.timeout"] == 1  # the query, as with one DAG
