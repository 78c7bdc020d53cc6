"""Loaders, data-dir resolution and seeded splits, on the real shared data and on broken files."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.datasets import DatasetFormatError, DatasetNotFoundError, Item


@pytest.fixture(scope="module")
def mmlu_all() -> list[Item]:
    return ds.load("mmlu_redux", include_unscored=True)


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ds.DATA_DIR_ENV, str(tmp_path / "env"))
    assert ds.data_dir(tmp_path / "x") == tmp_path / "x"
    assert ds.data_dir() == tmp_path / "env"
    monkeypatch.delenv(ds.DATA_DIR_ENV)
    # a fake repo whose sibling shared/datasets exists
    repo = tmp_path / "repo"
    (repo / "tasks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    monkeypatch.chdir(repo / "tasks")
    assert ds.data_dir() == tmp_path / "shared" / "datasets"
    # outside any repo: the user cache dir
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert ds.data_dir().name == "datasets"
    assert "hieramas" in str(ds.data_dir())


def test_mmlu_rows(mmlu_all: list[Item]) -> None:
    assert len(mmlu_all) == 5700
    scored = ds.load("mmlu")
    assert len(scored) == sum(1 for i in mmlu_all if i.meta["error_type"] == "ok") == 5330
    item = next(i for i in mmlu_all if i.id == "abstract_algebra/2")
    assert item.answer == "B"
    assert item.domain == "mmlu" and item.dataset == "mmlu_redux"
    assert item.question.endswith("A. Yes, with p=2.\nB. Yes, with p=3.\nC. Yes, with p=5.\nD. No.")
    assert len(item.choices) == 4
    assert not ds.is_scored(next(i for i in mmlu_all if i.id == "abstract_algebra/0"))
    assert len({i.subject for i in mmlu_all}) == 57


def test_other_datasets() -> None:
    math = ds.load("math500")
    assert len(math) == 500 and math[0].id == "math500/0"
    assert math[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert math[0].meta["level"] == 2
    gsm = ds.load("gsm8k")
    assert len(gsm) == 7473 and gsm[0].answer == "72"
    assert all("," not in i.answer for i in gsm)
    he = ds.load("humaneval")
    assert len(he) == 164 and he[0].id == "HumanEval/0"
    assert he[0].answer.startswith(he[0].question)
    assert he[0].meta["entry_point"] == "has_close_elements"
    hash(he[0])  # items are hashable despite their meta mapping


def test_unknown_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="unknown dataset"):
        ds.load("nope")
    with pytest.raises(DatasetNotFoundError, match="not found") as missing:
        ds.load("gsm8k", tmp_path)
    assert "hieramas data fetch" in str(missing.value)  # the documented way to get them


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('["a"]', "not a JSON object"),
        ('{"question": "q"}', "missing field 'answer'"),
        ('{"question": "q", "answer": "no final number"}', "####"),
        ('{"question": 3, "answer": "#### 4"}', "must be str"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "gsm8k" / "train.jsonl"
    path.parent.mkdir()
    good = json.dumps({"question": "q", "answer": "x\n#### 1,234"})
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DatasetFormatError) as err:
        ds.load("gsm8k", tmp_path)
    assert err.value.line == 3
    assert str(path) in str(err.value) and reason in str(err.value)


def test_malformed_mmlu_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "mmlu_redux" / "mmlu_redux.jsonl"
    path.parent.mkdir()
    row = {"id": "a/0", "subject": "a", "question": "q", "choices": ["1", "2", "3", "4"]}
    path.write_text(json.dumps({**row, "answer": 7, "error_type": "ok"}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"mmlu_redux.jsonl:1: .*out of range"):
        ds.load("mmlu", tmp_path)
    path.write_text(json.dumps({**row, "choices": ["1"], "answer": 0, "error_type": "ok"}) + "\n")
    with pytest.raises(DatasetFormatError, match="4 strings"):
        ds.load("mmlu", tmp_path)
    gz = tmp_path / "humaneval" / "HumanEval.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetFormatError, match="unreadable"):
        ds.load("humaneval", tmp_path)
    with gzip.open(gz, "wt") as handle:
        handle.write('{"task_id": "T/0"}\n')
    with pytest.raises(DatasetFormatError, match=r"HumanEval\.jsonl\.gz:1: missing field 'prompt'"):
        ds.load("humaneval", tmp_path)


def test_split_deterministic_stratified(mmlu_all: list[Item]) -> None:
    a = ds.split(mmlu_all, seed=7)
    b = ds.split(list(reversed(mmlu_all)), seed=7)
    c = ds.split(mmlu_all, seed=8)
    assert a.seed == 7 and a.fractions == (0.6, 0.2, 0.2)
    ids = lambda items: {i.id for i in items}  # noqa: E731
    assert ids(a.train) == ids(b.train) and ids(a.test) == ids(b.test)
    assert ids(a.test) != ids(c.test)
    assert ids(a.train) | ids(a.validation) | ids(a.test) == ids(mmlu_all)
    assert not ids(a.train) & ids(a.test) and not ids(a.validation) & ids(a.test)
    # every subject has 100 rows -> exactly 60/20/20 per subject
    per_subject = Counter(i.subject for i in a.test)
    assert set(per_subject.values()) == {20}
    assert Counter(i.subject for i in a.train)["anatomy"] == 60


def test_split_small_strata_and_bad_fractions() -> None:
    items = [
        Item(id=f"s{k}/{n}", dataset="x", domain="general", question="", answer="", subject=f"s{k}")
        for k in range(3)
        for n in range(k + 1)
    ]
    parts = ds.split(items, seed=0, fractions=(0.5, 0.25, 0.25))
    assert len(parts.train) + len(parts.validation) + len(parts.test) == len(items)
    with pytest.raises(ValueError, match="fractions"):
        ds.split(items, seed=0, fractions=(0.5, 0.5, 0.5))
