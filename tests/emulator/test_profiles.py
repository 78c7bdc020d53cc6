"""The profile data: the default pool reproduces the reference table; bad files fail clearly."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from hieramas.emulator.profiles import ProfileError, load_profiles
from hieramas.tasks.datasets import data_dir

COLUMNS = {"MMLU(-Redux)": "mmlu", "MATH(-500)": "math", "HumanEval": "humaneval", "GSM8K": "gsm8k"}


def _reference_rows() -> dict[str, dict[str, str]]:
    path = data_dir() / "llm_pool_reference.md"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(header) and re.fullmatch(r"[\w.-]+", cells[0]):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
        if len(rows) and not re.fullmatch(r"[\w.-]+", cells[0]):
            break
    return rows


def _default_raw() -> dict[str, Any]:
    text = resources.files("hieramas.emulator").joinpath("profiles.yaml").read_text()
    raw: dict[str, Any] = yaml.safe_load(text)
    return raw


def test_default_pool_matches_reference_table() -> None:
    pool = load_profiles()
    rows = _reference_rows()
    assert set(pool.models) == set(rows)
    for name, row in rows.items():
        model = pool.models[name]
        assert model.model_id == row["OpenRouter id"]
        assert model.prices.input_per_m == pytest.approx(float(row["$/M in"]))
        assert model.prices.output_per_m == pytest.approx(float(row["$/M out"]))
        for column, domain in COLUMNS.items():
            assert model.accuracy[domain] == pytest.approx(float(row[column]) / 100), (name, domain)


def test_model_defaults_are_merged_under_each_model(tmp_path: Path) -> None:
    raw = _default_raw()
    raw["model_defaults"]["susceptibility"] = 0.42
    raw["models"] = {"only": raw["models"]["llama-8b"]}
    del raw["models"]["only"]["susceptibility"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    pool = load_profiles(path)
    assert list(pool.models) == ["only"]
    assert pool.models["only"].susceptibility == 0.42
    assert pool.models["only"].synthesis_skill == 0.2  # the model's own value wins


def _write(tmp_path: Path, mutate: object) -> Path:
    raw = _default_raw()
    assert callable(mutate)
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["models"]["llama-8b"]["accuracy"].update(mmlu=1.2), "accuracy"),
        (lambda r: r["models"]["llama-8b"]["accuracy"].update(chess=0.5), "unknown domains"),
        (lambda r: r["models"]["llama-8b"]["accuracy"].pop("math"), "no accuracy"),
        (lambda r: r["models"]["llama-8b"].update(synthesis_skill=2), "synthesis_skill"),
        (lambda r: r["models"]["llama-8b"]["role_fit"].update(chess={"match": 1}), "role families"),
        (lambda r: r["role_families"]["law"]["roles"].append("Critic"), "Critic"),
        (lambda r: r["models"]["llama-8b"].update(surprise=1), "surprise"),
        (lambda r: r.update(models={}), "models"),
    ],
)
def test_invalid_profiles_raise_profile_error(tmp_path: Path, mutate: object, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profiles(_write(tmp_path, mutate))


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ProfileError, match="invalid YAML"):
        load_profiles(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profiles(bad)
