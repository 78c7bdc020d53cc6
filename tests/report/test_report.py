"""``hieramas report``: the counting (Pareto front, Jaccard, edge shares, LLM shares per role)
on known inputs, then reports written from run directories in the formats the writers
produce (a real Stage-2 run, bench files by ``BenchFile``, trace events by ``event_json``),
checked for valid images that the Markdown references and for the EMULATED label."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hieramas.benchfile import BenchFile
from hieramas.cli import app
from hieramas.controller.config import parse_config
from hieramas.evaluation import ItemResult
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.dagrun import EVAL_LOG, Stage2Options, run_stage2
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.trainconfig import to_yaml, training_config
from hieramas.report import SourceError, write_report
from hieramas.report.analysis import (
    Dag,
    consensus,
    edge_frequency,
    jaccard,
    jaccard_matrix,
    mean_pairwise_jaccard,
    role_shares,
    top_dags,
)
from hieramas.report.figures import pareto_front
from hieramas.wire.events import LlmCall, event_json

MODELS = ["llama-8b", "qwen3-8b", "gpt-5-mini"]


# -- counting ------------------------------------------------------------------------------


def test_pareto_front_keeps_the_undominated_points_by_cost() -> None:
    points = [(2.0, 0.8), (3.0, 0.9), (2.5, 0.7), (1.0, 0.5), (3.0, 0.85), (2.0, 0.8)]
    # (2.0, 0.8) twice: equal points do not dominate each other
    assert pareto_front(points) == [3, 0, 5, 1]
    assert pareto_front([]) == []


def test_jaccard_of_edge_sets() -> None:
    a = {("x", "y"), ("y", "z")}
    b = {("x", "y"), ("x", "z")}
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(a, a) == 1.0 and jaccard(set(), set()) == 1.0
    assert jaccard(a, {("y", "x")}) == 0.0  # direction matters
    m = jaccard_matrix([a, b, set()])
    assert m[0][1] == m[1][0] == pytest.approx(1 / 3)
    assert [m[i][i] for i in range(3)] == [1.0, 1.0, 1.0] and m[0][2] == 0.0
    assert mean_pairwise_jaccard([a, b, a]) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert mean_pairwise_jaccard([a]) == 1.0


def test_top_dags_density_edge_shares_and_consensus() -> None:
    nodes = ("a", "b", "c")
    chain = Dag(nodes, frozenset({("a", "b"), ("b", "c")}))
    full = Dag(nodes, frozenset({("a", "b"), ("b", "c"), ("a", "c")}))
    fan = Dag(nodes, frozenset({("a", "b"), ("a", "c")}))
    dags = [chain, full, chain, fan, chain, full]
    top = top_dags(dags, 2)
    assert [(t.dag, t.count) for t in top] == [(chain, 3), (full, 2)]
    assert top[0].share == 0.5
    assert full.density == 1.0 and chain.density == pytest.approx(2 / 3)
    assert Dag(("a",), frozenset()).density == 1.0
    freq = edge_frequency(dags, list(nodes))
    assert freq[0][1] == 1.0 and freq[1][2] == pytest.approx(5 / 6)
    assert freq[0][2] == pytest.approx(3 / 6) and freq[2][0] == 0.0
    assert consensus(dags).edges == {("a", "b"), ("b", "c")}  # a->c in exactly half: out


def test_role_shares_are_each_roles_share_of_its_slots() -> None:
    counts = {"Critic": Counter({"llama-8b": 3, "skip": 1}), "Doctor": Counter({"gpt-5-mini": 2})}
    actions, roles, matrix = role_shares(counts)
    assert roles == ["Critic", "Doctor"]
    assert actions == ["llama-8b", "gpt-5-mini", "skip"]  # most used first
    assert matrix == [[0.75, 0.0], [0.0, 1.0], [0.25, 0.0]]
    for j in range(len(roles)):
        assert sum(row[j] for row in matrix) == pytest.approx(1.0)


# -- run directories -----------------------------------------------------------------------


def _doc() -> dict[str, object]:
    return dict(training_config("mmlu", roles=3, models=MODELS))


def _stage1_run(path: Path, *, compare: bool = True) -> Path:
    """A finished Stage-1 run directory in the formats the train driver writes."""
    doc = _doc()
    nodes = list(doc["supernodes"])  # type: ignore[call-overload]
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(to_yaml(doc))
    (path / "driver.json").write_text(json.dumps({"identity": {"dataset": "mmlu", "seed": 0}}))
    run = {"dataset": "mmlu", "queries": 64, "batch": 16, "seed": 0, "reward": "multi"}
    (path / "run.json").write_text(json.dumps(run))
    metrics = []
    for it in range(1, 5):
        metrics.append({
            "kind": "train", "iteration": it, "queries": 16 * it, "n": 16,
            "accuracy": 0.5 + it / 10, "cost_per_query_usd": 0.01 / it, "version_after": it + 1,
            "learner": {"mean_reward": 0.1 * it},
        })  # fmt: skip
        if it % 2 == 0:
            metrics.append({
                "kind": "eval", "iteration": it, "version": it + 1, "n": 20,
                "accuracy": 0.6 + it / 20, "ci95": [0.5, 0.9], "cost_per_query_usd": 0.005,
            })  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    best = {"version": 5, "step": 4, "accuracy": 0.8, "ci95": [0.5, 0.9],
            "cost_per_query_usd": 0.005, "queries": 64}  # fmt: skip
    summary = {"dataset": "mmlu", "reward": "multi", "queries": 64, "best": best, "emulated": True}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "learner").mkdir()
    with (path / "learner" / "episodes.jsonl").open("w") as fh:
        for i in range(8):
            assignment = {
                "proposers": {n: [MODELS[i % 3], "skip"] for n in nodes},
                "synthesizers": {n: MODELS[(i + k) % 3] for k, n in enumerate(nodes)},
                "decision": "gpt-5-mini",
            }
            fh.write(json.dumps({"query_id": f"q{i}", "assignment": assignment}) + "\n")
    if compare:
        (path / "compare").mkdir()
        summaries = [
            {"method": "learned:multi", "n": 20, "accuracy": 0.8, "ci95": [0.6, 0.9],
             "cost_per_query_usd": 0.002, "latency_p50_s": 0.5, "latency_p95_s": 1.0},
            {"method": "random-slots", "n": 20, "accuracy": 0.7, "ci95": [0.5, 0.85],
             "cost_per_query_usd": 0.004, "latency_p50_s": 0.6, "latency_p95_s": 1.2},
            {"method": "all-slots@gpt-5-mini", "n": 20, "accuracy": 0.9, "ci95": [0.7, 0.97],
             "cost_per_query_usd": 0.02, "latency_p50_s": 0.4, "latency_p95_s": 0.9},
        ]  # fmt: skip
        compare_doc = {"dataset": "mmlu_redux/test", "split_seed": 0, "summaries": summaries,
                       "emulated": True}  # fmt: skip
        (path / "compare" / "compare.json").write_text(json.dumps(compare_doc))
    return path


def _trace(path: Path) -> None:
    """Two queries' LLM-call events as the trace stream holds them (``event_json``)."""
    events = []
    for q, calls in (("q-short", 1), ("q-long", 3)):
        for i in range(calls):
            events.append(LlmCall(
                query_id=q, config_version=1, node=f"n{i}", role="Critic", slot="synthesizer",
                worker="w1", model="llama-8b", model_id="llama-8b", endpoint="emulator",
                started=100.0 + i, finished=100.5 + 2 * i, outcome="error" if i == 2 else "ok",
            ))  # fmt: skip
    path.write_text("".join(event_json(e) + "\n" for e in events))


def _pngs(report: Path) -> list[str]:
    """The PNGs ``report`` references, each checked to exist and to be a valid image."""
    text = report.read_text()
    names = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    for name in names:
        with Image.open(report.parent / name) as image:
            image.verify()
            assert image.format == "PNG"
    assert sorted(names) == sorted(p.name for p in report.parent.glob("*.png"))
    return names


def test_a_stage1_run_gives_every_figure_it_has_data_for(tmp_path: Path) -> None:
    run = _stage1_run(tmp_path / "run")
    _trace(run / "trace.jsonl")
    report = write_report(run, html=True)
    assert report == run / "report" / "report.md"
    text = report.read_text()
    assert "**Data: EMULATED.**" in text
    names = _pngs(report)
    assert set(names) == {
        "accuracy_cost.png", "learning_curves.png", "config_dag.png",
        "llm_by_role_mmlu.png", "latency_breakdown.png",
    }  # fmt: skip
    # the Pareto column: random-slots is dominated by learned:multi (cheaper, more accurate)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["learned:multi"].rstrip(" |").endswith("*")
    assert not rows["random-slots"].rstrip(" |").endswith("*")
    assert "Query q-long" in text  # the query with the most calls is the one drawn
    html = (run / "report" / "report.html").read_text()
    assert "<table>" in html and 'src="accuracy_cost.png"' in html


def test_what_a_source_lacks_is_said_not_drawn(tmp_path: Path) -> None:
    run = _stage1_run(tmp_path / "run", compare=False)
    report = write_report(run, tmp_path / "out")
    text = report.read_text()
    assert "accuracy_cost.png" not in text and "hieramas compare" in text
    assert "No trace.jsonl" in text
    with pytest.raises(SourceError):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError):
        write_report(tmp_path / "empty")


def _bench_file(path: Path, emulated: bool) -> Path:
    bench = BenchFile(path, "mmlu_redux/test", 0, {"methods": ["single", "hieramas"]})
    for method, acc, cost in (("single", 0.6, 0.001), ("hieramas", 0.8, 0.01)):
        result = ItemResult(
            item_id="a/1", status="ok", outcome="correct", predicted="A", gold="A",
            cost_usd=cost, tokens=10, latency_s=0.2, config_version=1, error=None,
        )  # fmt: skip
        summary = {"method": method, "n": 1, "accuracy": acc, "ci95": [acc - 0.1, acc + 0.1],
                   "cost_per_query_usd": cost, "emulated": emulated}  # fmt: skip
        bench.finish(summary, [result])
    return path


def test_a_bench_file_is_labelled_by_what_it_ran_on(tmp_path: Path) -> None:
    emulated = write_report(_bench_file(tmp_path / "emu.json", True))
    assert emulated == tmp_path / "emu-report" / "report.md"
    assert "**Data: EMULATED.**" in emulated.read_text()
    assert _pngs(emulated) == ["accuracy_cost.png"]
    real = write_report(_bench_file(tmp_path / "real.json", False), tmp_path / "real")
    assert "**Data: REAL MODELS.**" in real.read_text()
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(SourceError):
        write_report(tmp_path / "junk.json")


def test_the_cli_writes_the_report_and_says_where(tmp_path: Path) -> None:
    bench = _bench_file(tmp_path / "bench.json", True)
    result = CliRunner().invoke(app, ["report", str(bench), "--out", str(tmp_path / "r"), "--html"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "r" / "report.md") in result.output
    assert (tmp_path / "r" / "report.html").exists()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2


def _policy_dir(path: Path) -> Path:
    """A Stage-1 run's best.ckpt (a hash-embedder policy that does not skip everything)."""
    doc = _doc()
    config = parse_config(to_yaml(doc))
    policy = Policy.create(config, HashEmbedder(16), seed=1)
    with torch.no_grad():
        weight = policy.net.score.weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    meta = CheckpointMeta(
        version=4, parent=3, config_name=config.name, config_version=1,
        layout=policy.layout.to_json(), embedder="hash-16", dim=16,
        hidden=policy.net.hidden, seed=1, temperature=1.0,
    )  # fmt: skip
    path.mkdir(parents=True)
    (path / "best.ckpt").write_bytes(encode_checkpoint(policy, meta))
    (path / "config.yaml").write_text(to_yaml(doc))
    (path / "run.json").write_text(json.dumps({"alpha": 0.5, "lam": 300.0}))
    return path


@pytest.mark.timeout(300)
def test_a_stage2_run_records_each_querys_dag_and_the_report_draws_them(tmp_path: Path) -> None:
    stage1 = _policy_dir(tmp_path / "stage1")
    options = Stage2Options(
        dataset="mmlu", run_dir=tmp_path / "s2", stage1=stage1, queries=3, candidates=3,
        concurrency=3, epochs=1, eval_items=3, eval_latency_scale=0.0,
    )  # fmt: skip
    summary = run_stage2(options)
    rows = [json.loads(line) for line in (tmp_path / "s2" / EVAL_LOG).read_text().splitlines()]
    assert (
        {r["method"] for r in rows}
        == set(summary["eval"])
        == {"classifier", "random", "full", "chain"}
    )
    for method, s in summary["eval"].items():
        mine = [r for r in rows if r["method"] == method]
        assert len(mine) == 3
        # the recorded DAGs are the ones evaluated: the same mean edge count
        assert sum(len(r["edges"]) for r in mine) / 3 == pytest.approx(s["edges_mean"])
        for r in mine:
            assert {a for e in r["edges"] for a in e} <= set(r["nodes"])
            assert set(r["nodes"]) <= set(r["synthesizers"]) and r["correct"] in (True, False)
    report = write_report(tmp_path / "s2")
    text = report.read_text()
    names = _pngs(report)
    assert "**Data: EMULATED.**" in text
    assert {"accuracy_cost.png", "dags_classifier.png", "llm_by_role_mmlu.png"} <= set(names)
    assert "## DAGs run by classifier" in text and "## DAGs run by full" in text

    # a demo directory: both runs and the evaluation table
    demo = tmp_path / "demo"
    demo.mkdir()
    _stage1_run(demo / "stage1")
    (tmp_path / "s2").rename(demo / "stage2")
    table = [{**s, "method": m, "emulated": True} for m, s in summary["eval"].items()]
    (demo / "evaluation.json").write_text(json.dumps(table))
    report = write_report(demo)
    text = report.read_text()
    assert report == demo / "report" / "report.md" and "**Data: EMULATED.**" in text
    assert {"accuracy_cost.png", "learning_curves.png", "dags_classifier.png"} <= set(_pngs(report))


def test_a_stage1_runs_greedy_plans_replace_its_sampled_episodes_for_the_roles(
    tmp_path: Path,
) -> None:
    from hieramas.report.sources import GREEDY_PLANS, load

    run = _stage1_run(tmp_path / "run", compare=False)
    sampled = load(run)
    assert "training episodes" in sampled.roles_caption
    assert sampled.roles["mmlu"]["Critic"]["skip"] == 2  # the last quarter: 2 of 8 episodes
    nodes = list(_doc()["supernodes"])  # type: ignore[call-overload]
    row = {
        "item_id": "a/1", "policy_version": 5, "nodes": nodes, "edges": [],
        "proposers": {n: ["gpt-5-mini", "gpt-5-mini"] for n in nodes},
        "synthesizers": {n: "llama-8b" for n in nodes},
    }  # fmt: skip
    (run / GREEDY_PLANS).write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    greedy = load(run)
    assert "greedily" in greedy.roles_caption and "v5" in greedy.roles_caption
    for role in greedy.roles["mmlu"].values():
        assert role == Counter({"gpt-5-mini": 4, "llama-8b": 2})
