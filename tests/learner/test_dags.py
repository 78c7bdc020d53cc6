"""The Stage-2 DAG generator: the paper's recipe, seeded and vectorised, and the DAG the
runtime executes is exactly the scored one."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from planning_support import PROVIDER, SHARED

from hieramas.controller.config import HieraConfig, PlannerConfig, parse_config
from hieramas.controller.planner import Assignment, PlanRequest, build_plan
from hieramas.learner.dags import (
    DagBatch,
    DagError,
    active_adjacency,
    chain_adjacency,
    edges_of,
    full_adjacency,
    generate_dags,
    is_acyclic,
    longest_path,
)
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone, SupernodeRun
from support import SCRIPTED_LLMS, apply_config, ask, config_yaml, node


def _reachable(adj: np.ndarray) -> np.ndarray:
    reach = adj.copy()
    for k in range(len(adj)):
        reach |= reach[:, k : k + 1] & reach[k : k + 1, :]
    return reach


def test_candidates_are_connected_dags_in_the_density_range_and_distinct() -> None:
    n, pairs = 8, 28
    adj = generate_dags(n, 500, seed=1, d_min=0.3, d_max=0.7)
    assert adj.shape == (500, n, n) and adj.dtype == bool
    assert len({a.tobytes() for a in adj}) == 500  # deduplicated
    for a in adj:
        assert is_acyclic(a) and not a.diagonal().any()
        assert a.sum() >= n - 1
        # weakly connected: the spanning tree reaches every node
        undirected = _reachable(a | a.T | np.eye(n, dtype=bool))
        assert undirected.all()
    counts = adj.sum(axis=(1, 2))
    assert counts.min() >= round(0.3 * pairs) and counts.max() <= round(0.7 * pairs)
    assert len(set(counts.tolist())) > 5  # the density is drawn per candidate
    # every node is sometimes a source and sometimes a sink: the order is random
    assert (~adj.any(axis=1)).any(axis=0).all() and (~adj.any(axis=2)).any(axis=0).all()


def test_the_generator_is_deterministic_per_seed_and_the_extremes_are_tree_and_full() -> None:
    one = generate_dags(6, 50, seed=7)
    assert np.array_equal(one, generate_dags(6, 50, seed=7))
    assert not np.array_equal(one, generate_dags(6, 50, seed=8))
    trees = generate_dags(6, 30, seed=0, d_min=0.0, d_max=0.0)
    assert (trees.sum(axis=(1, 2)) == 5).all()
    full = generate_dags(6, 30, seed=0, d_min=1.0, d_max=1.0)
    assert (full.sum(axis=(1, 2)) == 15).all()  # a tournament order per candidate
    assert all(is_acyclic(a) for a in full)
    # 3 nodes hold few distinct DAGs of 2 edges: fewer come back, never a duplicate
    small = generate_dags(3, 100, seed=0)
    assert 0 < len(small) < 100 and len({a.tobytes() for a in small}) == len(small)
    assert generate_dags(1, 3, seed=0).shape == (1, 1, 1)
    assert len(generate_dags(8, 40, seed=0, unique=False)) == 40
    for bad in ({"d_min": 0.8, "d_max": 0.2}, {"d_min": -0.1}, {"d_max": 1.5}):
        with pytest.raises(DagError):
            generate_dags(4, 10, seed=0, **bad)


def test_batch_helpers_name_edges_in_node_order_and_measure_depth() -> None:
    nodes = ("a", "b", "c", "d")
    batch = DagBatch.of(nodes, [full_adjacency(4), chain_adjacency(4)])
    assert batch.edges(1) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert batch.edges(0) == [(x, y) for x, y in itertools.combinations(nodes, 2)]
    assert batch.edge_counts().tolist() == [6, 3]
    assert batch.densities().tolist() == [1.0, 0.5]
    assert batch.depths().tolist() == [3, 3]
    assert longest_path(np.zeros((4, 4), dtype=bool)) == 0
    star = np.zeros((4, 4), dtype=bool)
    star[0, 1:] = True
    assert longest_path(star) == 1
    assert not is_acyclic(star | star.T)
    assert batch.select([1]).edges(0) == batch.edges(1)
    with pytest.raises(DagError):
        DagBatch(nodes, np.zeros((2, 3, 3), dtype=bool))
    generated = DagBatch.generate(nodes, 10, seed=3)
    assert len(generated) == 10 and generated.nodes == nodes


def test_baselines_random_dag_is_the_generator() -> None:
    from hieramas.tasks.baselines import random_dag

    nodes = [f"n{i}" for i in range(8)]
    [adj] = generate_dags(8, 1, seed=4, d_min=0.5, d_max=0.5)
    assert random_dag(nodes, seed=4, density=0.5) == edges_of(adj, nodes)


def test_generating_ten_thousand_candidates_is_vectorised() -> None:
    # not a timing test (bench/classifier.py times it): a per-candidate Python loop would
    # take seconds here, so a minute-scale bound only catches a gross regression
    started = time.process_time()
    assert generate_dags(8, 10_000, seed=0).shape == (10_000, 8, 8)
    assert time.process_time() - started < 30


# -- the DAG that runs is the DAG that was scored -------------------------------------


def _config(url: str, names: list[str], llm: str = "fixed:A") -> str:
    roles = ["Critic", "Doctor", "Lawyer", "Historian", "Economist"]
    nodes = {n: node(roles[i % len(roles)], [llm], "pass") for i, n in enumerate(names)}
    extra = [] if llm in SCRIPTED_LLMS else [llm]
    return config_yaml(url, nodes, [], query_timeout_s=30, extra_llms=extra)


def test_a_candidate_as_a_plan_has_exactly_its_edges_even_with_a_dropped_node() -> None:
    names = ["n0", "n1", "n2", "n3", "n4"]
    config = parse_config(_config("http://127.0.0.1:9/v1", names))
    batch = DagBatch.generate(names, 40, seed=11)
    for c in range(len(batch)):
        active = np.array([True, True, c % 3 != 0, True, True])  # sometimes drop n2
        synth = {n: ("pass" if active[i] else "skip") for i, n in enumerate(names)}
        assignment = Assignment(
            proposers={n: ["fixed:A"] for n in names}, synthesizers=synth, edges=batch.edges(c)
        )
        plan = build_plan(config, 1, assignment, query_id=f"q{c}", task_text="t")
        executed = {(p, n) for n, spec in plan.nodes.items() for p in spec.preds}
        assert executed == {(n, d) for n, spec in plan.nodes.items() for d in spec.succs}
        scored = active_adjacency(batch.adjacency[c], active)
        assert executed == set(edges_of(scored, names))


class _DagPolicy:
    """A policy version that runs the config's LLMs on a given DAG."""

    def __init__(self, edges: list[tuple[str, str]]) -> None:
        self.edges = edges

    @property
    def version(self) -> int:
        return 1

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        return Assignment(
            proposers={n: list(s.proposers) for n, s in config.supernodes.items()},
            synthesizers={n: s.synthesizer for n, s in config.supernodes.items()},
            edges=list(self.edges),
        )


@pytest.fixture
def _provider() -> Iterator[None]:
    SHARED._policy = None
    yield
    SHARED._policy = None


@pytest.mark.usefixtures("_provider")
def test_the_runtime_executes_exactly_the_candidate_edges(
    nats_server: NatsServer, llm_url: str
) -> None:
    names = ["n0", "n1", "n2", "n3", "n4"]
    batch = DagBatch.generate(names, 20, seed=5, d_min=0.2, d_max=0.5)
    c = int(np.argmax(batch.depths()))  # a deep one: waits are visible in the timings
    edges = batch.edges(c)
    SHARED.publish(_DagPolicy(edges))
    spec = PlannerConfig(kind="learned", provider=PROVIDER)
    with Stack(nats_url=nats_server.url, planner=spec) as stack:
        apply_config(stack, _config(llm_url, names, llm="slow:0.6"))
        result = ask(stack)
        assert result["status"] == "ok"
        assert stack.bus is not None and stack.controller is not None
        stack.bus.call(stack.controller.traces.flush(), 10)
        events: list[Any] = stack.bus.call(replay(stack.bus, Subjects()), 10)
    [done] = [e for e in events if isinstance(e, QueryDone)]
    assert set(map(tuple, done.edges)) == set(edges)
    runs = {e.node: e for e in events if isinstance(e, SupernodeRun)}
    assert set(runs) == set(names)
    for src, dst in edges:  # each edge is waited for ...
        assert runs[dst].started is not None and runs[dst].started >= runs[src].finished
    query_start = min(r.started or 0.0 for r in runs.values())
    for name in names:  # ... and nothing else: a node starts well before another node could end
        preds = [s for s, d in edges if d == name]
        ready = max((runs[p].finished for p in preds), default=query_start)
        started = runs[name].started
        assert started is not None and started - ready < 0.45, (name, started - ready)
