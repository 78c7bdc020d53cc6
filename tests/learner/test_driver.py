"""The training driver: item order, state, resuming after SIGKILL (real processes), the
comparison table and plot of a tiny run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hieramas.learner.compare import CompareOptions, pareto_front, run_compare
from hieramas.learner.driver import (
    DriverError,
    DriverState,
    TrainOptions,
    item_order,
    load_config_doc,
    trim_metrics,
)
from hieramas.learner.trainrun import _state

SMALL = [
    "--dataset", "mmlu", "--roles", "2", "--edges", "none", "--batch", "4",
    "--concurrency", "4", "--eval-every", "3", "--eval-items", "6", "--embedder", "hash-16",
    "--seed", "3",
]  # fmt: skip


def test_item_order_is_a_fresh_permutation_every_epoch() -> None:
    first = [item_order(10, 0, p) for p in range(10)]
    second = [item_order(10, 0, p) for p in range(10, 20)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    assert first == [item_order(10, 0, p) for p in range(10)]
    assert first != [item_order(10, 1, p) for p in range(10)]
    grouped = [item_order(10, 0, p, group=4) for p in range(40)]
    assert grouped == [i for i in first for _ in range(4)]  # each item 4 times in a row


def test_state_round_trips_and_a_run_with_other_options_is_refused(tmp_path: Path) -> None:
    options = TrainOptions(dataset="mmlu", run_dir=tmp_path, seed=1)
    state = _state(options, "config-a")
    state.done = {0, 1, 5}
    state.iteration = 2
    state.save(tmp_path / "driver.json")
    again = DriverState.load(tmp_path / "driver.json")
    assert again is not None and again.done == {0, 1, 5} and again.counted == 3
    assert _state(options, "config-a").done == {0, 1, 5}
    with pytest.raises(DriverError, match="config_sha256"):
        _state(options, "config-b")
    with pytest.raises(DriverError, match="reward"):
        _state(TrainOptions(dataset="mmlu", run_dir=tmp_path, seed=1, reward="final"), "config-a")


def test_the_default_config_has_the_asked_proposer_slots_and_edges(tmp_path: Path) -> None:
    doc = load_config_doc(TrainOptions(dataset="math", run_dir=tmp_path, proposers=4, edges="none"))
    assert doc["edges"] == []
    assert {len(node["proposers"]) for node in doc["supernodes"].values()} == {4}
    two = load_config_doc(TrainOptions(dataset="math", run_dir=tmp_path))
    assert {len(node["proposers"]) for node in two["supernodes"].values()} == {2}
    assert two["edges"]
    assert two["limits"]["temperature"] == 0.0  # a repeated model answers as one call
    sampled = load_config_doc(TrainOptions(dataset="math", run_dir=tmp_path, llm_temperature=0.7))
    assert sampled["limits"]["temperature"] == 0.7


def test_pareto_front_keeps_the_undominated_points_by_cost() -> None:
    points = [(1.0, 0.9), (2.0, 0.95), (3.0, 0.93), (0.5, 0.8), (2.0, 0.94)]
    assert pareto_front(points) == [3, 0, 1]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _train(run_dir: Path, queries: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "hieramas", "train", *SMALL, "--queries", str(queries),
            "--run-dir", str(run_dir)]  # fmt: skip
    log = (run_dir.parent / f"{run_dir.name}.log").open("ab")
    return subprocess.Popen(args, stdout=log, stderr=log, process_group=0)


def _rows(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run"
    yield path
    children = path / "children.json"  # a failed test must not leave servers behind
    if children.exists():
        for row in json.loads(children.read_text()).values():
            if _alive(int(row["pid"])):
                os.kill(int(row["pid"]), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_killed_with_sigkill_resumes_where_it_stopped(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    first = _train(run_dir, 64)
    deadline = time.monotonic() + 120
    while sum(r["kind"] == "train" for r in _rows(run_dir)) < 3:
        assert first.poll() is None, (run_dir.parent / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no training iteration within 120 s"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # the driver alone: its servers are orphaned
    first.wait(10)
    left = json.loads((run_dir / "children.json").read_text())
    assert {"nats", "emulator", "learner"} <= set(left)
    assert all(_alive(int(r["pid"])) for r in left.values()), "orphans outlive the driver"
    killed_at = DriverState.load(run_dir / "driver.json")
    assert killed_at is not None and 0 < killed_at.counted < 64

    second = _train(run_dir, 64)
    assert second.wait(240) == 0, (run_dir.parent / "run.log").read_text()[-3000:]
    assert not any(_alive(int(r["pid"])) for r in left.values()), "stale children stopped"
    assert not (run_dir / "children.json").exists()

    state = DriverState.load(run_dir / "driver.json")
    assert state is not None and state.finished
    assert state.done == set(range(64)), "every position counted once, none twice"
    rows = _rows(run_dir)
    train = [r for r in rows if r["kind"] == "train"]
    iterations = [int(str(r["iteration"])) for r in train]
    assert iterations == sorted(set(iterations)), "no iteration logged twice"
    assert sum(int(str(r["n"])) for r in train) >= 64
    assert int(str(train[-1]["queries"])) == 64
    # the learner kept training across the restart: the versions after each update grow
    versions = [int(str(r["version_after"])) for r in train if r["version_after"]]
    assert versions == sorted(versions) and versions[-1] > versions[0]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert evals and all(r["other_version"] == 0 for r in evals)
    summary = json.loads((run_dir / "summary.json").read_text())
    best = summary["best"]["version"]
    assert (run_dir / "checkpoints" / f"v{best}.ckpt").read_bytes() == (
        run_dir / "best.ckpt"
    ).read_bytes()

    # the comparison of this tiny run: every method on the same items, a table and a plot
    doc = run_compare(CompareOptions(run_dir=run_dir, limit=6, concurrency=4, rotation=True))
    methods = [s["method"] for s in doc["summaries"]]
    assert methods == [
        "learned:multi", "learned:multi/rotation", "random-slots", "all-slots@gpt-5-mini", "all-slots@llama-8b",
        "self-consistency@gpt-5-mini",
    ]  # fmt: skip
    for s in doc["summaries"]:
        assert s["n"] == 6 and s["errors"] == 0 and s["emulated"]
        assert s["ci95"][0] - 1e-9 <= s["accuracy"] <= s["ci95"][1] + 1e-9
    assert doc["pareto_front"] and set(doc["pareto_front"]) <= set(methods)
    png = (run_dir / "compare" / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    rows_cmp = [
        json.loads(x) for x in (run_dir / "compare" / "compare.jsonl").read_text().splitlines()
    ]
    learned = [r for r in rows_cmp if r["method"] == "learned:multi"]
    assert len(learned) == 6 and all(r["policy_version"] is not None for r in learned)
    assert {r["item_id"] for r in learned} == {
        r["item_id"] for r in rows_cmp if r["method"] == "random-slots"
    }
    # the same version, decoded with the top-n rotation
    rotated = [r for r in rows_cmp if r["method"] == "learned:multi/rotation"]
    assert len(rotated) == 6 and all(r["policy_version"] is not None for r in rotated)


def test_resuming_drops_the_rows_the_saved_state_does_not_cover(tmp_path: Path) -> None:
    # killed after logging iteration 3 and evaluation (3, v4) but before saving either
    state = DriverState(identity={}, iteration=2, evals=[{"iteration": 2, "version": 3}])
    rows = [
        {"kind": "train", "iteration": 1},
        {"kind": "train", "iteration": 2},
        {"kind": "eval", "iteration": 2, "version": 3},
        {"kind": "train", "iteration": 3},
        {"kind": "eval", "iteration": 3, "version": 4},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "tra')  # torn
    assert trim_metrics(path, state) == 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:3]
    assert trim_metrics(path, state) == 0  # nothing more to drop
    assert trim_metrics(tmp_path / "none.jsonl", state) == 0
