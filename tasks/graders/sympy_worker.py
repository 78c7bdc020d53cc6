"""Symbolic equivalence in a separate process, so that sympy can never hang the grader.

:class:`SympyChecker` keeps one worker process (``python -m
hieramas.tasks.graders.sympy_worker``) that answers JSON-line requests; a
request that exceeds its time limit gets the worker killed and restarted.
Inputs are expressions produced by :func:`hieramas.tasks.mathexpr.to_expr`
(a whitelisted language), never raw text.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import subprocess
import sys
import threading
from typing import Any

import structlog

__all__ = ["SympyChecker", "main"]

log = structlog.get_logger(__name__)


def _equal(a: str, b: str, equation: bool) -> bool:
    import sympy

    names = {c: sympy.Symbol(c) for c in "abcdefghjklmnopqrstuvwxyzABCDEFGHJKLMNOPQRSTUVWXYZ"}
    names.update({"I": sympy.I, "pi": sympy.pi, "oo": sympy.oo, "sqrt": sympy.sqrt})
    names.update({f: getattr(sympy, f) for f in ("sin", "cos", "tan", "cot", "sec", "csc")})
    names.update({"asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan})
    names.update({"log": sympy.log, "exp": sympy.exp, "binomial": sympy.binomial})
    x = sympy.sympify(a, locals=names)
    y = sympy.sympify(b, locals=names)
    if sympy.simplify(x - y) == 0:
        return True
    if equation:
        if sympy.simplify(x + y) == 0:
            return True
        ratio = sympy.simplify(x / y)
        return bool(ratio.is_number and ratio != 0)
    return False


def main() -> None:
    """Worker loop: one JSON request per line in, one JSON reply per line out."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
    import sympy  # noqa: F401  (import once, before the first request)

    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            reply: dict[str, Any] = {"equal": _equal(req["a"], req["b"], bool(req.get("eq")))}
        except Exception as exc:  # any sympy failure is "unknown", not a crash
            reply = {"equal": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class SympyChecker:
    """Asks a worker process whether two expressions are equal, under a time limit."""

    def __init__(self, timeout_s: float = 3.0, start_timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.calls = 0
        self.timeouts = 0

    def _read_line(self, timeout: float) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        return self._proc.stdout.readline() or None

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hieramas.tasks.graders.sympy_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if self._read_line(self.start_timeout_s) is None:
            self.close()
            raise RuntimeError("sympy worker did not start")

    def close(self) -> None:
        """Stop the worker (a new one starts on the next call)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def equal(self, a: str, b: str, *, equation: bool = False) -> bool | None:
        """True/False when sympy decides in time; None on timeout or sympy error."""
        with self._lock:
            self.calls += 1
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(
                    (json.dumps({"a": a, "b": b, "eq": equation}) + "\n").encode()
                )
                self._proc.stdin.flush()
            except BrokenPipeError:
                self.close()
                return None
            line = self._read_line(self.timeout_s)
            if line is None:
                self.timeouts += 1
                log.info("sympy_timeout", a=a[:80], b=b[:80], timeout_s=self.timeout_s)
                self.close()
                return None
            value = json.loads(line).get("equal")
            return value if isinstance(value, bool) else None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


if __name__ == "__main__":
    main()
