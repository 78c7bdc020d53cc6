"""``hieramas train --local``: its small config, the held-out items, and the evaluation seam
(a config planned by a checkpoint file).  No model runs here; the real runs are in
docs/results.md."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import cast

import pytest
import yaml

from hieramas.bus import Bus
from hieramas.controller.config import parse_config
from hieramas.controller.learned import LearnedPlanner
from hieramas.controller.planner import PlanRequest
from hieramas.controller.planners import make_planner
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.driver import TrainOptions, load_config_doc
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.filepolicy import provider
from hieramas.learner.localtrain import (
    PLACEHOLDER_URL,
    eval_config,
    local_training_config,
    training_items,
    with_base_url,
)
from hieramas.learner.policy import Policy
from hieramas.learner.slots import SlotLayout
from hieramas.learner.trainconfig import to_yaml
from hieramas.tasks.datasets import DatasetError


def test_the_local_config_is_one_role_one_proposer_decided_by_vote_at_notional_prices() -> None:
    doc = local_training_config("humaneval", embedder="hash-16")
    config = parse_config(to_yaml(doc))
    assert [s.role for s in config.supernodes.values()] == ["Programming Expert"]
    assert [len(s.proposers) for s in config.supernodes.values()] == [1]
    assert config.decision == "vote" and config.edges == []
    assert set(config.llms) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"}
    assert all(llm.notional_prices and llm.price_out > 0 for llm in config.llms.values())
    assert config.limits.max_tokens == 384 and config.limits.query_timeout_s == 900
    assert config.planner is not None and config.planner.kind == "learned"
    assert config.endpoints["local"].base_url == PLACEHOLDER_URL
    assert config.endpoints["local"].max_concurrency == 1
    # the synthesizer (an LLM, pass or vote; never skip: it is the only answering role),
    # then the proposer (an LLM or skip)
    layout = SlotLayout.from_config(config)
    assert [s.kind for s in layout.slots] == ["synthesizer", "proposer"]
    assert layout.actions == ("skip", "vote", "pass", *config.llms)
    subset = parse_config(to_yaml(local_training_config("humaneval", models=["smollm2-135m"])))
    assert list(subset.llms) == ["smollm2-135m"]


def test_the_live_url_changes_only_the_endpoint_so_a_resumed_run_keeps_its_identity() -> None:
    options = TrainOptions(dataset="humaneval", run_dir=Path("unused"), local=True, holdout=40)
    doc = load_config_doc(options)
    live = with_base_url(doc, "http://127.0.0.1:41234/v1")
    assert live["endpoints"]["local"]["base_url"] == "http://127.0.0.1:41234/v1"
    assert {k: v for k, v in live.items() if k != "endpoints"} == {
        k: v for k, v in doc.items() if k != "endpoints"
    }
    assert doc["endpoints"]["local"]["base_url"] == PLACEHOLDER_URL  # not changed in place
    identity = options.identity(to_yaml(doc))
    assert identity["local"] is True and identity["holdout"] == 40
    # runs made before --local/--holdout existed have neither key, and still resume
    plain = TrainOptions(dataset="humaneval", run_dir=Path("unused")).identity("x")
    assert "local" not in plain and "holdout" not in plain


def test_held_out_items_are_neither_trained_nor_validated_on() -> None:
    train, val = training_items("humaneval", holdout=40, seed=0, eval_items=10, data_dir=None)
    held = {f"HumanEval/{i}" for i in range(40)}
    ids = [i.id for i in train + val]
    assert not held & set(ids)
    assert len(set(ids)) == len(ids)  # disjoint
    assert len(val) == 10 and len(train) == round(0.8 * (164 - 40))
    again, again_val = training_items("humaneval", holdout=40, seed=0, eval_items=10, data_dir=None)
    assert [i.id for i in again] == [i.id for i in train] and again_val == val
    other, _ = training_items("humaneval", holdout=40, seed=1, eval_items=10, data_dir=None)
    assert {i.id for i in other} != {i.id for i in train}
    with pytest.raises(DatasetError):
        training_items("humaneval", holdout=164, seed=0, eval_items=10, data_dir=None)


def _checkpoint(tmp_path: Path, version: int = 4) -> tuple[Path, str]:
    text = to_yaml(local_training_config("humaneval"))
    config = parse_config(text)
    embedder = HashEmbedder(16)
    policy = Policy.create(config, embedder, seed=1)
    meta = CheckpointMeta(
        version=version, parent=None, config_name=config.name, config_version=1,
        layout=policy.layout.to_json(), embedder=embedder.name, dim=16,
        hidden=policy.net.hidden, seed=1, temperature=1.0,
    )  # fmt: skip
    path = tmp_path / "best.ckpt"
    path.write_bytes(encode_checkpoint(policy, dataclasses.replace(meta)))
    return path, text


def test_an_eval_config_plans_greedily_with_the_checkpoint_file(tmp_path: Path) -> None:
    path, text = _checkpoint(tmp_path)
    evaluated = parse_config(eval_config(text, path))
    assert evaluated.planner is not None
    assert evaluated.planner.options["path"] == str(path.resolve())
    planner = make_planner(evaluated.planner)
    assert isinstance(planner, LearnedPlanner)
    asyncio.run(planner.start(None))  # type: ignore[arg-type]  # the file provider needs no bus
    request = PlanRequest(task_text="def f(x):\n    return x\n", domain="humaneval")
    first = planner.assign(evaluated, request)
    assert first.policy_version == 4 and not first.sampled
    assert planner.assign(evaluated, request) == first  # greedy: the same plan again
    assert planner.counters["greedy"] == 2
    # everything but the planner block is the training config
    assert (
        yaml.safe_load(eval_config(text, path))["supernodes"] == yaml.safe_load(text)["supernodes"]
    )


def test_a_missing_or_foreign_file_fails_the_provider_never_plans_with_something_else(
    tmp_path: Path,
) -> None:
    bus = cast(Bus, None)  # a file source needs no bus
    with pytest.raises(OSError):
        asyncio.run(provider({"path": str(tmp_path / "none.ckpt")}).start(bus))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        asyncio.run(provider({"path": str(bad)}).start(bus))
    with pytest.raises(ValueError, match="needs 'path'"):
        provider({})
    with pytest.raises(ValueError, match="unknown"):
        provider({"path": "x", "version": 3})
    with pytest.raises(ValueError, match="mode"):
        provider({"path": "x", "mode": "sample"})
