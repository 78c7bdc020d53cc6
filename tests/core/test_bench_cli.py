"""``hieramas bench`` end to end: real nats-server, real emulator subprocess, graded items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hieramas.benchcli import load_items, parse_method
from hieramas.cli import app
from hieramas.natsserver import NatsServer
from hieramas.tasks import baselines
from hieramas.tasks.datasets import DatasetError

runner = CliRunner()
MMLU_CONFIG = Path(__file__).resolve().parents[2] / "hieramas" / "configs" / "mmlu.yaml"


@pytest.mark.slow
def test_bench_two_methods_on_the_emulator(nats_server: NatsServer, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench", "mmlu", "--limit", "6", "--seed", "1",
            "-m", "single@gpt-5-nano", "-m", "self-consistency", "--k", "3",
            "--config", str(MMLU_CONFIG),
            "--nats", nats_server.url, "--json", str(out), "--concurrency", "4",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "EMULATED" in result.output
    for column in ("method", "accuracy", "95% CI", "cost $/query", "tokens/query", "p95 s"):
        assert column in result.output
    doc = json.loads(out.read_text())
    assert doc["dataset"] == "mmlu_redux/test" and doc["split_seed"] == 1
    summaries = {s["method"]: s for s in doc["summaries"]}
    assert list(summaries) == ["single@gpt-5-nano", "self-consistency", "config:mmlu.yaml"]
    assert "supernodes:\n  expert:" in summaries["config:mmlu.yaml"]["config_yaml"]
    for s in summaries.values():
        assert s["n"] == 6 and s["emulated"] is True and s["notional_prices"] is False
        assert s["errors"] == 0 and 0 <= s["accuracy"] <= 1
        low, high = s["ci95"]
        assert low - 1e-9 <= s["accuracy"] <= high + 1e-9
        assert s["tokens_per_query"] > 0 and s["cost_per_query_usd"] > 0
        assert s["emulator_seed"] == 1
    # three samples cost about three times one call
    sc, single = summaries["self-consistency"], summaries["single@gpt-5-nano"]
    assert sc["tokens_per_query"] > 2 * single["tokens_per_query"]
    assert summaries["self-consistency"]["config_version"] > single["config_version"]
    items = doc["items"]
    assert len(items) == 18
    assert {r["outcome"] for r in items} <= {"correct", "wrong", "unparseable"}
    expected = [i.id for i in load_items("mmlu", "test", 6, 1, None)[0]]
    assert [r["item_id"] for r in items if r["method"] == "self-consistency"] == expected


@pytest.mark.slow
def test_resume_extends_a_run_and_refuses_other_options(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    base = ["bench", "gsm8k", "-m", "single@gpt-5-nano", "--nats", nats_server.url,
            "--json", str(out), "--concurrency", "2"]  # fmt: skip
    first = runner.invoke(app, [*base, "--limit", "3"])
    assert first.exit_code == 0, first.output
    before = json.loads(out.read_text())
    assert len(before["items"]) == 3 and before["wall_s"]["single@gpt-5-nano"] > 0
    # a crashed run leaves only some rows: drop one, mark one as an error, then resume to 5
    before["items"] = before["items"][:2]
    before["items"][1]["outcome"] = "error"
    out.write_text(json.dumps(before))
    second = runner.invoke(app, [*base, "--limit", "5", "--resume"])
    assert second.exit_code == 0, second.output
    assert "1 graded item from" in second.output
    doc = json.loads(out.read_text())
    (summary,) = doc["summaries"]
    assert summary["n"] == 5 and summary["resumed_items"] == 1
    expected = [i.id for i in load_items("gsm8k", "test", 5, 0, None)[0]]
    assert [r["item_id"] for r in doc["items"]] == expected  # in item order once finished
    assert len(doc["items"]) == 5 and all(r["outcome"] != "error" for r in doc["items"])
    third = runner.invoke(app, [*base, "--limit", "5", "--resume", "--max-tokens", "99"])
    assert third.exit_code == 2
    assert "other max_tokens" in third.output


def test_resume_needs_a_json_file() -> None:
    result = runner.invoke(app, ["bench", "gsm8k", "--resume"])
    assert result.exit_code == 2 and "--resume needs --json" in result.output


def test_items_are_the_first_n_of_the_seeded_split() -> None:
    items, label = load_items("math", "validation", 5, 3, None)
    again, _ = load_items("math", "validation", 5, 3, None)
    assert label == "math500/validation" and len(items) == 5
    assert [i.id for i in items] == [i.id for i in again]
    everything, label = load_items("humaneval", "all", 3, 0, None)
    assert label == "humaneval/all" and [i.id for i in everything] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
    ]
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_items("squad", "test", 1, 0, None)
    with pytest.raises(DatasetError, match="unknown split"):
        load_items("mmlu", "dev", 1, 0, None)


def test_method_specs() -> None:
    assert parse_method("single@qwen3-8b") == ("single", "qwen3-8b")
    assert parse_method("moa") == ("moa", None)
    with pytest.raises(baselines.BaselineError):
        parse_method("tree-of-thought")


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "squad"],
        ["bench", "mmlu", "-m", "tree-of-thought"],
        ["bench", "mmlu", "-m", "single@gpt-9"],
        ["bench", "mmlu", "--models", "gpt-5-nano,nope"],
        ["bench", "humaneval", "--local", "--models", "gpt-5-nano"],
        ["bench", "mmlu", "--config", "/nonexistent/config.yaml"],
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip()
