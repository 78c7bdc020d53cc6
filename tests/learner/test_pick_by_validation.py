"""scripts/pick_by_validation.py picks a run by its kept version's validation figures only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick_by_validation.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pick_by_validation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


pbv = _module()


def _run(root: Path, name: str, lam: float, accuracy: float, cost: float, **over: Any) -> Path:
    """A fake finished run dir: run.json, summary.json whose ``best`` is the kept version."""
    run_dir = root / name
    run_dir.mkdir()
    summary: dict[str, Any] = {
        "dataset": "math",
        "seed": 1,
        "evals": [{"version": 11, "accuracy": 1.0, "cost_per_query_usd": 0.0001}],
        "best": {"version": 31, "accuracy": accuracy, "cost_per_query_usd": cost, "queries": 480},
    }
    summary.update(over)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "run.json").write_text(json.dumps({"lam": lam, "select": "best", "seed": 1}))
    return run_dir


def test_picks_the_most_accurate_kept_version_not_the_best_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # every run has an earlier evaluation at 1.0, but only the kept version counts
    dirs = [
        _run(tmp_path, "l10", 10, 0.95, 0.004),
        _run(tmp_path, "l30", 30, 0.97, 0.006),
        _run(tmp_path, "l100", 100, 0.93, 0.001),
    ]
    assert pbv.main([str(d) for d in dirs]) == 0
    out = capsys.readouterr().out
    assert "pick: " + str(dirs[1]) in out
    assert "highest validation accuracy (0.970)" in out
    assert out.count("**yes**") == 1
    assert pbv.main(["--lam-only", *map(str, dirs)]) == 0
    assert capsys.readouterr().out.strip() == "30"


def test_a_tie_goes_to_the_cheaper_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = [
        _run(tmp_path, "l10", 10, 0.96, 0.004),
        _run(tmp_path, "l30", 30, 0.96, 0.002),
        _run(tmp_path, "l100", 100, 0.90, 0.0005),
    ]
    assert pbv.main(["--lam-only", *map(str, dirs)]) == 0
    assert capsys.readouterr().out.strip() == "30"
    assert pbv.main([str(d) for d in dirs]) == 0
    assert "tied at validation accuracy 0.960" in capsys.readouterr().out


def test_it_never_reads_test_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a compare (test) result that would favour the other run is ignored
    dirs = [_run(tmp_path, "l10", 10, 0.99, 0.004), _run(tmp_path, "l30", 30, 0.95, 0.001)]
    (dirs[1] / "compare").mkdir()
    (dirs[1] / "compare" / "compare.json").write_text(json.dumps({"accuracy": 1.0}))
    (dirs[0] / "compare").mkdir()
    (dirs[0] / "compare" / "compare.json").write_text("not json: reading it would fail")
    assert pbv.main(["--lam-only", *map(str, dirs)]) == 0
    assert capsys.readouterr().out.strip() == "10"


@pytest.mark.parametrize("case", ["unfinished", "no_kept_version", "other_seed", "other_dataset"])
def test_runs_that_cannot_be_compared_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    good = _run(tmp_path, "l10", 10, 0.95, 0.004)
    if case == "unfinished":
        bad = tmp_path / "l30"
        bad.mkdir()
    elif case == "no_kept_version":
        bad = _run(tmp_path, "l30", 30, 0.95, 0.004, best=None)
    elif case == "other_seed":
        bad = _run(tmp_path, "l30", 30, 0.95, 0.004, seed=2)
    else:
        bad = _run(tmp_path, "l30", 30, 0.95, 0.004, dataset="mmlu")
    assert pbv.main([str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pick_by_validation:" in captured.err
