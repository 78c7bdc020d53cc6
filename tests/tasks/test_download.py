"""Downloads, against a real HTTP server on loopback that imitates the public sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from download_server import Handler, serve

from hieramas.tasks import datasets as ds
from hieramas.tasks import download as dl


@pytest.fixture()
def server() -> Iterator[str]:
    with serve() as url:
        yield url


def test_download_files_with_mirrors_retries_and_validation(server: str, tmp_path: Path) -> None:
    sources = {
        "math500": dl.Source((f"{server}/hf/math.jsonl", f"{server}/gh/math.jsonl")),
        "humaneval": dl.Source((f"{server}/he.jsonl.gz",)),
        "gsm8k": dl.Source((f"{server}/flaky/gsm.jsonl",)),
    }
    paths = dl.download(["math", "humaneval", "gsm8k"], tmp_path, sources=sources)
    assert paths["math500"] == tmp_path / "math500" / "test.jsonl"
    assert ds.load("math500", tmp_path)[0].answer == "2"
    assert ds.load("humaneval", tmp_path)[0].id == "HumanEval/0"
    assert ds.load("gsm8k", tmp_path)[0].answer == "1000"
    assert Handler.hits["/hf/math.jsonl"] == 1 and Handler.hits["/flaky/gsm.jsonl"] == 2
    # present files are kept unless forced; a malformed download never replaces them
    bad = {"gsm8k": dl.Source((f"{server}/bad/gsm.jsonl",))}
    dl.download(["gsm8k"], tmp_path, sources=bad)
    with pytest.raises(dl.DownloadError, match="not valid"):
        dl.download(["gsm8k"], tmp_path, sources=bad, force=True)
    assert ds.load("gsm8k", tmp_path)[0].answer == "1000"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".download")] == []


def test_download_mmlu_redux_pages(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "MMLU_SUBJECTS", ["anatomy", "virology"])
    monkeypatch.setenv(dl.ROWS_URL_ENV, f"{server}/rows")  # a mirror named in the environment
    seen: list[tuple[str, int, int]] = []
    dl.download(["mmlu_redux"], tmp_path, on_progress=lambda *p: seen.append(p))
    assert seen == [("mmlu_redux", 0, 2), ("mmlu_redux", 1, 2), ("mmlu_redux", 2, 2)]
    items = ds.load("mmlu", tmp_path, include_unscored=True)
    assert len(items) == 153 and items[0].id == "anatomy/0" and items[-1].id == "virology/2"
    assert items[1].meta["error_type"] == "wrong_groundtruth"
    assert len(ds.load("mmlu", tmp_path)) == 151


def test_unreachable_source(tmp_path: Path) -> None:
    with httpx.Client(timeout=2) as client:
        sources = {"gsm8k": dl.Source(("http://127.0.0.1:9/nothing",))}
        with pytest.raises(dl.DownloadError, match="all sources failed"):
            dl.download(["gsm8k"], tmp_path, sources=sources, client=client)
    assert dl.normalise_error_type(None) == "ok"
    assert dl.normalise_error_type("Bad Options-Clarity ") == "bad_options_clarity"
