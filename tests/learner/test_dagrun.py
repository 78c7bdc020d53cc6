"""``train --stage 2``: candidates executed with the frozen Stage-1 policy, appended per query
and resumed after a crash, a classifier trained and published as the store's ``dag.`` series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hieramas.controller.client import HieraClient
from hieramas.controller.config import parse_config
from hieramas.controller.learned import LearnedPlanner
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.dagcheckpoint import decode_classifier
from hieramas.learner.dagrun import (
    DATA_LOG,
    EDGE_LOG,
    Stage2Options,
    _adjacencies,
    _Stage1,
    run_stage2,
)
from hieramas.learner.dags import edges_of
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.trainconfig import to_yaml, training_config
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone


def _stage1_dir(path: Path) -> Path:
    doc = training_config("mmlu", roles=4, models=["llama-8b", "qwen3-8b", "gpt-5-mini"])
    config = parse_config(to_yaml(doc))
    policy = Policy.create(config, HashEmbedder(16), seed=1)
    with torch.no_grad():  # not uniform: greedy would skip every supernode but one
        weight = policy.net.score.weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    meta = CheckpointMeta(
        version=4, parent=3, config_name=config.name, config_version=1,
        layout=policy.layout.to_json(), embedder="hash-16", dim=16,
        hidden=policy.net.hidden, seed=1, temperature=1.0,
    )  # fmt: skip
    path.mkdir()
    (path / "best.ckpt").write_bytes(encode_checkpoint(policy, meta))
    (path / "config.yaml").write_text(to_yaml(doc))
    (path / "run.json").write_text(json.dumps({"alpha": 0.5, "lam": 300.0}))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.timeout(300)
def test_data_is_appended_per_query_resumed_after_a_torn_line_and_a_classifier_published(
    tmp_path: Path,
) -> None:
    stage1 = _stage1_dir(tmp_path / "stage1")
    options = Stage2Options(
        dataset="mmlu", run_dir=tmp_path / "run", stage1=stage1, queries=3, candidates=3,
        concurrency=3, epochs=2, edge_baseline=True,
    )  # fmt: skip
    first = run_stage2(options)
    log = tmp_path / "run" / DATA_LOG
    lines = _lines(log)
    assert len(lines) == 3 and first["data"] == {**first["data"], "queries": 3, "candidates": 9}
    rows = [json.loads(line) for line in lines]
    for row in rows:
        assert len(row["embedding"]) == 16 and len(row["candidates"]) == 3
        adjs = {tuple(c["adjacency"]) for c in row["candidates"]}
        assert len(adjs) >= 2  # different DAGs ran for the same query and assignment
        for c in row["candidates"]:
            assert c["status"] == "ok" and c["cost_usd"] > 0
            assert (c["reward"] > 0) == bool(c["correct"])
    reuse = first["reuse"]
    assert reuse["calls_paid"] > 0 and reuse["usd_paid"] > 0
    assert set(first["training"]) == {"bce", "rank"} and first["winner"] in ("bce", "rank")
    assert first["published_version"] == 1
    assert first["per_edge"]["updates"] == 3  # the per-edge baseline ran the same 3 queries
    assert len(_lines(tmp_path / "run" / EDGE_LOG)) == 3
    ckpt = decode_classifier((tmp_path / "run" / "classifier.ckpt").read_bytes())
    assert ckpt.meta.version == 1 and ckpt.meta.policy_version == 4
    assert ckpt.meta.embedder == "hash-16"

    # a crash mid-write leaves a torn line: it is dropped, finished queries are not re-run
    with log.open("a") as fh:
        fh.write('{"item_id": "torn", "candid')
    # (resumed with an evaluation: the classifier's top-1, and its top-3 with a vote)
    second = run_stage2(
        Stage2Options(**{**options.__dict__, "queries": 4, "eval_items": 3, "vote_k": 3})
    )
    again = _lines(log)
    assert again[:3] == lines and len(again) == 4
    assert json.loads(again[3])["item_id"] not in {r["item_id"] for r in rows}
    assert second["data"]["queries"] == 4 and second["published_version"] == 2
    # the per-edge learner's state is rebuilt from its log: 3 replayed updates, 1 new
    assert second["per_edge"]["updates"] == 4
    top1, voted = second["eval"]["classifier"], second["eval"]["classifier-vote3"]
    assert top1["n"] == voted["n"] == 3 and voted["errors"] == 0
    # three DAGs ran per item (the top-1 among them), each paid for
    assert voted["edges_mean"] > top1["edges_mean"]
    assert voted["cost_per_query_usd"] > 2 * top1["cost_per_query_usd"]


@pytest.mark.timeout(300)
def test_against_a_running_stack_its_own_controller_plans_the_stored_dags(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """``train --stage 2 --nats``: the running stack's controller and worker run every query,
    planned from the plans the run stores in NATS; the executed edges are the candidates'."""
    stage1 = _stage1_dir(tmp_path / "stage1")
    with Stack(nats_url=nats_server.url, emulator=True) as running:
        options = Stage2Options(
            dataset="mmlu", run_dir=tmp_path / "run", stage1=stage1, queries=2, candidates=3,
            concurrency=2, epochs=1, eval_items=2, nats=nats_server.url,
        )  # fmt: skip
        summary = run_stage2(options)
        assert running.bus is not None and running.controller is not None
        # a query the run stored no plan for is planned statically, never failed
        stray = HieraClient(running.bus).ask("Is 2 + 2 = 4?", domain="mmlu", item_id="no-plan")
        assert running.bus.call(stray, 130)["status"] == "ok"
        running.bus.call(running.controller.traces.flush(), 10)
        events = running.bus.call(replay(running.bus, Subjects()), 10)
        planners = [p.result() for p in running.controller.gateway._planners.values()]
    assert summary["emulated"] is None and summary["reuse_measured"] is False
    assert summary["data"]["queries"] == 2 and summary["published_version"] == 1
    assert all(s["n"] == 2 and s["errors"] == 0 for s in summary["eval"].values())
    [learned] = [p for p in planners if isinstance(p, LearnedPlanner)]
    asked = 2 * 3 + 2 * len(summary["eval"])
    assert learned.counters["greedy"] == asked and learned.counters["mismatch"] == 1
    queries = [e for e in events if isinstance(e, QueryDone)]
    assert len(queries) == asked + 1  # every query ran on the running stack
    done = {e.item_id: e for e in queries}
    assert done["no-plan"].policy_version is None
    nodes = list(_Stage1.load(stage1).nodes)
    for line in _lines(tmp_path / "run" / DATA_LOG):
        row = json.loads(line)
        for k, adj in enumerate(_adjacencies(row, len(nodes))):
            event = done[f"{row['item_id']}#{k}"]
            assert event.status == "ok" and event.policy_version == 4
            assert set(map(tuple, event.edges)) == set(edges_of(adj, nodes))
