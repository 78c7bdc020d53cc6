"""The trainer's hyper-parameters: the CLI options reach the learner, its trainer and its
checkpoints, and a run directory remembers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from learner_support import toy_config

from hieramas.cli import app
from hieramas.learner.driver import DriverError, TrainOptions
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.hyper import LEGACY, Hyper
from hieramas.learner.lineage import Lineage
from hieramas.learner.service import LearnerOptions
from hieramas.learner.trainrun import _state, learner_options

HYPER = Hyper(entropy_coef=1.0, lr=0.01, temp_start=2.5, temp_end=1.2, temp_updates=40)


def _learner_params(args: list[str]) -> dict[str, object]:
    """What ``hieramas learner ARGS`` parses them to (the real command, not run)."""
    group = typer.main.get_command(app)
    command = group.commands["learner"]  # type: ignore[attr-defined]
    return dict(command.make_context("learner", list(args)).params)


def test_the_driver_hands_its_settings_to_the_learner_command() -> None:
    options = TrainOptions(dataset="mmlu", run_dir=Path("unused"), hyper=HYPER, lam=30.0)
    params = _learner_params(learner_options(options))
    assert params["entropy_coef"] == 1.0
    assert params["lr"] == 0.01
    assert params["temp_start"] == 2.5
    assert params["temp_end"] == 1.2
    assert params["temp_updates"] == 40
    assert params["lam"] == 30.0
    assert params["slot_actions"] is False
    assert _learner_params(Hyper(slot_actions=True).args())["slot_actions"] is True
    assert params["group"] == 1
    assert _learner_params(Hyper(group=4).args())["group"] == 4
    assert params["proposer_skip"] is True
    assert params["synthesizer_skip"] is True
    assert params["advantage_scale"] == "batch"
    assert params["kind_columns"] is False
    assert params["distinct_proposers"] is False
    assert params["dropped_credit"] == "final"
    peers = Hyper(dropped_credit="peers")
    assert _learner_params(peers.args())["dropped_credit"] == "peers"
    assert LearnerOptions(run_dir=Path("unused"), hyper=peers).train_config().reward.dropped == (
        "peers"
    )
    assert LearnerOptions(run_dir=Path("unused")).train_config().reward.dropped == "final"
    with pytest.raises(ValueError, match="dropped credit"):
        Hyper(dropped_credit="zero")  # type: ignore[arg-type]
    distinct = _learner_params(Hyper(distinct_proposers=True).args())
    assert distinct["distinct_proposers"] is True
    assert _learner_params(Hyper(kind_columns=True).args())["kind_columns"] is True
    running = Hyper(advantage_scale="running")
    assert _learner_params(running.args())["advantage_scale"] == "running"
    assert LearnerOptions(run_dir=Path("unused"), hyper=running).train_config().advantage_scale == (
        "running"
    )
    with pytest.raises(ValueError, match="advantage scale"):
        Hyper(advantage_scale="median")  # type: ignore[arg-type]
    assert _learner_params(Hyper(proposer_skip=False).args())["proposer_skip"] is False
    assert (
        LearnerOptions(run_dir=Path("unused"), hyper=Hyper(group=4)).train_config().group_baseline
    )
    assert not LearnerOptions(run_dir=Path("unused")).train_config().group_baseline
    defaults = _learner_params([])
    assert defaults["entropy_coef"] == Hyper().entropy_coef
    assert defaults["temp_updates"] == Hyper().temp_updates


def test_the_trainer_uses_them_and_every_checkpoint_records_them() -> None:
    train = LearnerOptions(run_dir=Path("unused"), alpha=0.3, lam=50.0, hyper=HYPER).train_config()
    assert (train.entropy_coef, train.lr, train.t0, train.t1, train.schedule_updates) == (
        1.0, 0.01, 2.5, 1.2, 40,
    )  # fmt: skip
    assert (train.reward.alpha, train.reward.lam) == (0.3, 50.0)
    lineage = Lineage.create(
        toy_config({"x": ("Solver", 2)}, {"a": 0.1, "b": 1.0}), 1, HashEmbedder(8), train, seed=0
    )
    assert lineage.trainer.temperature == 2.5  # the schedule's start
    _, record = lineage.encode_version(1, {})
    hyper = record["hyper"]
    assert hyper["entropy_coef"] == 1.0 and hyper["lr"] == 0.01
    assert (hyper["t0"], hyper["t1"], hyper["schedule_updates"]) == (2.5, 1.2, 40)
    assert hyper["reward"]["alpha"] == 0.3 and hyper["reward"]["lam"] == 50.0


def _may_skip(lineage: Lineage, kind: str) -> list[bool]:
    """Whether each ``kind`` slot may pick ``skip`` when every slot before it took an LLM."""
    skip = lineage.layout.action_index("skip")
    walker, seen = lineage.policy.rules.start(), []
    for slot in lineage.layout.slots:
        mask = walker.mask()
        if slot.kind == kind:
            seen.append(bool(mask[skip]))
        walker.push(len(mask) - 1)  # the last LLM
    return seen


@pytest.mark.parametrize("kind", ["proposer", "synthesizer"])
def test_a_skip_switch_reaches_the_masks_of_its_slots_only(kind: str) -> None:
    config = toy_config({"x": ("Solver", 3), "y": ("Solver", 2)}, {"a": 0.1, "b": 1.0})
    train = LearnerOptions(run_dir=Path("unused")).train_config()
    hyper = Hyper(**{f"{kind}_skip": False})  # type: ignore[arg-type]
    assert _learner_params(hyper.args())[f"{kind}_skip"] is False
    free = Lineage.create(config, 1, HashEmbedder(8), train, seed=0)
    fixed = Lineage.create(config, 1, HashEmbedder(8), train, seed=0, options=hyper.slot_options())
    other = "synthesizer" if kind == "proposer" else "proposer"
    assert _may_skip(fixed, kind) == [False] * len(_may_skip(free, kind))
    assert all(_may_skip(free, kind)) and _may_skip(fixed, other) == _may_skip(free, other)
    restored = Lineage.from_state(fixed.to_state(), HashEmbedder(8), train)
    assert _may_skip(restored, kind) == _may_skip(fixed, kind)


def test_a_run_directory_refuses_other_settings_and_older_runs_resume(tmp_path: Path) -> None:
    options = TrainOptions(dataset="mmlu", run_dir=tmp_path, hyper=HYPER)
    _state(options, "config").save(tmp_path / "driver.json")
    with pytest.raises(DriverError, match="entropy_coef"):
        _state(TrainOptions(dataset="mmlu", run_dir=tmp_path), "config")
    # a run directory from before the options: its identity lacks them, and it ran with LEGACY
    legacy = TrainOptions(dataset="mmlu", run_dir=tmp_path, hyper=LEGACY)
    (tmp_path / "driver.json").unlink()
    state = _state(legacy, "config")
    data = state.to_json()
    data["identity"] = {k: v for k, v in data["identity"].items() if k not in LEGACY.to_json()}
    (tmp_path / "driver.json").write_text(json.dumps(data))
    assert _state(legacy, "config").identity["entropy_coef"] == LEGACY.entropy_coef
    with pytest.raises(DriverError, match="entropy_coef"):
        _state(options, "config")


def test_bad_settings_are_refused() -> None:
    for bad in ({"entropy_coef": -1.0}, {"lr": 0.0}, {"temp_end": 0.0}, {"temp_updates": 0}):
        with pytest.raises(ValueError):
            Hyper(**bad)  # type: ignore[arg-type]


def _train_params(args: list[str]) -> dict[str, object]:
    """What ``hieramas train ARGS`` parses them to (the real command, not run)."""
    group = typer.main.get_command(app)
    command = group.commands["train"]  # type: ignore[attr-defined]
    return dict(command.make_context("train", list(args)).params)


def test_train_and_learner_share_one_definition_of_the_trainer_options() -> None:
    from hieramas.learner.rewards import RewardConfig

    names = ("alpha", "lam", "entropy_coef", "lr", "temp_start", "temp_end", "temp_updates")
    train, learner = _train_params([]), _learner_params([])
    assert {n: train[n] for n in names} == {n: learner[n] for n in names}
    assert (train["alpha"], train["lam"]) == (RewardConfig().alpha, RewardConfig().lam)
    args = ["--alpha", "0.2", "--lam", "30", "--entropy-coef", "1.0", "--lr", "0.01",
            "--temp-start", "2.5", "--temp-end", "1.2", "--temp-updates", "40"]  # fmt: skip
    train, learner = _train_params(args), _learner_params(args)
    assert {n: train[n] for n in names} == {n: learner[n] for n in names}
    assert train["lam"] == 30.0 and train["temp_updates"] == 40
    for params in (_train_params, _learner_params):
        with pytest.raises(Exception, match="less than or equal to 1"):
            params(["--alpha", "1.5"])  # out of the shared bounds in both commands


def test_distinct_proposers_reach_the_layout_and_survive_a_checkpoint() -> None:
    config = toy_config({"x": ("Solver", 3)}, {"a": 0.1, "b": 1.0, "c": 2.0})
    train = LearnerOptions(run_dir=Path("unused")).train_config()
    hyper = Hyper(proposer_skip=False, distinct_proposers=True)
    lineage = Lineage.create(
        config, 1, HashEmbedder(8), train, seed=0, options=hyper.slot_options()
    )
    assert lineage.layout.options.distinct_proposers
    restored = Lineage.from_state(lineage.to_state(), HashEmbedder(8), train)
    assert restored.layout.options.distinct_proposers
    plan = restored.policy.assignment(restored.policy.decide(torch.zeros(8), "greedy"))
    assert sorted(plan.proposers["x"]) == ["a", "b", "c"]
