"""``hieramas demo`` as a user runs it on a fresh machine: a real subprocess, no dataset beside
the checkout, MMLU-Redux fetched from a loopback imitation of the public source into the user
cache, then both learner stages, a live policy update and the evaluation, all on real embedded
stacks (nats-server, emulator, controller, worker, learner process).

One ``--quick`` run is shared by the assertions (it takes one to two minutes on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from download_server import serve

from hieramas.demoeval import LEARNED
from hieramas.tasks.download import MMLU_SUBJECTS, ROWS_URL_ENV

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HIERAMAS = [sys.executable, "-m", "hieramas"]
KEYS = ("method", "n", "accuracy", "ci95", "cost_per_query_usd", "latency_p50_s", "latency_p95_s")


@dataclass(frozen=True)
class Run:
    home: Path
    out: Path
    proc: subprocess.CompletedProcess[str]


def _fresh_env(home: Path, rows_url: str) -> dict[str, str]:
    """No data directory set, a private user cache, the loopback mirror, plain progress."""
    env = {k: v for k, v in os.environ.items() if k != "HIERAMAS_DATA_DIR"}
    env.update(
        XDG_CACHE_HOME=str(home / "cache"),
        HIERAMAS_PROGRESS="plain",
        **{ROWS_URL_ENV: rows_url},
    )
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("fresh-machine")  # no shared/ beside it, no checkout
    with serve() as url:
        proc = subprocess.run(
            [*HIERAMAS, "demo", "--quick", "--out", "demo"],
            cwd=home,
            env=_fresh_env(home, f"{url}/rows"),
            capture_output=True,
            text=True,
            timeout=900,
        )
    yield Run(home, home / "demo", proc)


def test_the_demo_fetches_the_data_it_lacks_with_a_progress_bar(demo_run: Run) -> None:
    assert demo_run.proc.returncode == 0, demo_run.proc.stderr[-4000:]
    cached = demo_run.home / "cache" / "hieramas" / "datasets" / "mmlu_redux" / "mmlu_redux.jsonl"
    assert cached.exists()  # the user cache, as a fresh clone has no shared/datasets
    assert "fetching it there first" in demo_run.proc.stderr
    n = len(MMLU_SUBJECTS)
    assert f"fetch MMLU-Redux (subjects): {n}/{n} (100%)" in demo_run.proc.stderr


def test_the_run_directory_holds_both_stages_the_evaluation_and_the_report(
    demo_run: Run,
) -> None:
    assert demo_run.proc.returncode == 0, demo_run.proc.stderr[-4000:]
    out = demo_run.out
    for name in ("stage1/best.ckpt", "stage1/metrics.jsonl", "stage2/classifier.ckpt",
                 "stage2/candidates.jsonl", "evaluation.jsonl", "trace.jsonl", "demo.json"):  # fmt: skip
        assert (out / name).exists(), name
    table = json.loads((out / "evaluation.json").read_text())
    assert table[0]["method"] == LEARNED and len(table) >= 3
    for row in table:
        assert all(k in row for k in KEYS) and row["emulated"] is True and row["n"] == 20
        assert 0.0 <= row["ci95"][0] <= row["accuracy"] <= row["ci95"][1] <= 1.0
    report = out / "report" / "report.md"
    assert report.exists() and "mulated" in report.read_text()
    assert list((out / "report").glob("*.png"))
    stdout = demo_run.proc.stdout
    for row in table:  # the printed table names every method
        assert row["method"] in stdout
    assert "EMULATED" in stdout and "95% CI" in stdout


def test_a_new_policy_version_planned_the_queries_after_it_was_published(demo_run: Run) -> None:
    assert demo_run.proc.returncode == 0, demo_run.proc.stderr[-4000:]
    events = [json.loads(line) for line in (demo_run.out / "trace.jsonl").read_text().splitlines()]
    queries = sorted((e for e in events if e["event"] == "query"), key=lambda e: e["started"])
    versions = [e["policy_version"] for e in queries]
    assert None not in versions and len(set(versions)) == 2, versions
    first, then = versions[0], versions[-1]  # by start: the old version, then the new one
    assert then > first
    # the learned system was then evaluated under the new version, as its results say
    rows = [
        json.loads(line) for line in (demo_run.out / "evaluation.jsonl").read_text().splitlines()
    ]
    learned = {r["policy_version"] for r in rows if r["method"] == LEARNED}
    assert len(learned) == 1 and learned.pop() > first
    assert "live policy update" in demo_run.proc.stdout


def test_no_fetch_refuses_without_data(tmp_path: Path) -> None:
    run = subprocess.run(
        [*HIERAMAS, "demo", "--quick", "--no-fetch", "--out", "demo"],
        cwd=tmp_path,
        env=_fresh_env(tmp_path, "http://127.0.0.1:9/rows"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "MMLU-Redux is not in" in run.stderr and "--no-fetch" in run.stderr
    assert not (tmp_path / "cache" / "hieramas" / "datasets" / "mmlu_redux").exists()
    assert not (tmp_path / "demo").exists()  # refused before anything started
