"""Downloads, against a real HTTP server on loopback that imitates the public sources."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks import download as dl

MATH_ROW = {
    "problem": "1+1?",
    "solution": "$\\boxed{2}$",
    "answer": "2",
    "subject": "Algebra",
    "level": 1,
}
HE_ROW = {
    "task_id": "HumanEval/0",
    "prompt": "def f():\n",
    "canonical_solution": "    return 1\n",
    "test": "def check(c):\n    assert c() == 1\n",
    "entry_point": "f",
}


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.hits[url.path] = self.hits.get(url.path, 0) + 1
        if url.path == "/hf/math.jsonl":
            self._send(404, b"gone")
        elif url.path == "/gh/math.jsonl":
            self._send(200, (json.dumps(MATH_ROW) + "\n").encode())
        elif url.path == "/he.jsonl.gz":
            self._send(200, gzip.compress((json.dumps(HE_ROW) + "\n").encode()))
        elif url.path == "/flaky/gsm.jsonl":  # one transient failure, then the data
            if self.hits[url.path] == 1:
                self._send(503, b"busy")
            else:
                self._send(200, b'{"question": "q", "answer": "w\\n#### 1,000"}\n')
        elif url.path == "/bad/gsm.jsonl":
            self._send(200, b'{"question": "q", "answer": "no number"}\n')
        elif url.path == "/rows":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            subject, offset = query["config"], int(query["offset"])
            total = 150 if subject == "anatomy" else 3
            rows = [
                {
                    "row_idx": i,
                    "row": {
                        "question": f"{subject} q{i}",
                        "choices": ["a", "b", "c", "d"],
                        "answer": i % 4,
                        "error_type": "Wrong Groundtruth" if i == 1 else "ok",
                        "correct_answer": None,
                    },
                }
                for i in range(offset, min(total, offset + int(query["length"])))
            ]
            self._send(200, json.dumps({"rows": rows, "num_rows_total": total}).encode())
        else:
            self._send(404, b"")


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


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
    assert _Handler.hits["/hf/math.jsonl"] == 1 and _Handler.hits["/flaky/gsm.jsonl"] == 2
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
    dl.download(["mmlu_redux"], tmp_path, rows_url=f"{server}/rows")
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
