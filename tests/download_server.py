"""A real HTTP server on loopback that imitates the public data sources (Hugging Face, GitHub).

``tests/tasks/test_download.py`` and the demo's fetch test (``tests/core/test_demo.py``)
download from it.  ``/rows`` imitates the dataset viewer's rows API: every MMLU subject has
3 rows (``anatomy`` 150), row 1 of each marked ``Wrong Groundtruth``.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

__all__ = ["HE_ROW", "MATH_ROW", "Handler", "serve"]

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


class Handler(BaseHTTPRequestHandler):
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


@contextmanager
def serve() -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
