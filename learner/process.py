"""A learner as a child process: ``hieramas learner`` started and stopped from Python.

The embedded :class:`~hieramas.stack.Stack` (``hieramas up``, ``train``) and tests
start one with :class:`LearnerProcess`; the learner and whoever drives queries
are then separate processes joined only by NATS.  Readiness is read from the
run directory's ``status.json`` (written by the child with its pid and phase).
This module imports no torch: the child does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hieramas.learner.rundir import METRICS_LOG, RunDir
from hieramas.processes import spawn, terminate

__all__ = ["LearnerProcess"]


class LearnerProcess:
    """``hieramas learner --run-dir DIR [options]`` on ``nats_url`` as a subprocess.

    ``options`` are extra command-line options (e.g. ``["--batch", "8"]``).  The
    child's log lines go to ``<run-dir>/learner.log``.
    """

    def __init__(
        self,
        nats_url: str,
        run_dir: str | Path,
        options: Sequence[str] = (),
        *,
        log_level: str = "info",
    ) -> None:
        self.nats_url = nats_url
        self.run_dir = RunDir(run_dir)
        self.options = list(options)
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(
        self, *, wait: str | None = "waiting_config", timeout: float = 120.0
    ) -> LearnerProcess:
        """Start the child; wait until it reaches phase ``wait`` (``waiting_config``: it is
        connected; ``running``: it consumes traces), unless ``wait`` is None."""
        self.run_dir.path.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "hieramas", "--log-level", self.log_level, "--log-json",
            "learner", "--run-dir", str(self.run_dir.path), *self.options,
        ]  # fmt: skip
        env = {**os.environ, "HIERAMAS_NATS_URL": self.nats_url}  # a password stays out of argv
        with (self.run_dir.path / "learner.log").open("ab") as logfile:
            self.process = spawn(
                args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, env=env
            )
        try:
            if wait is not None:
                self.wait_phase(wait, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def status(self) -> dict[str, Any] | None:
        """The child's ``status.json`` if it is this child's, else ``None``."""
        status = self.run_dir.read_status()
        if status is None or self.process is None or status.get("pid") != self.process.pid:
            return None
        return status

    def wait_phase(self, phase: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the child reports ``phase`` (or ``running``, which comes after all)."""
        order = ["starting", "connecting", "waiting_config", "running"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"the learner exited with code {code} (see {self.run_dir.path}/learner.log)"
                )
            status = self.status()
            reached = str((status or {}).get("phase"))
            if (
                status is not None
                and reached in order
                and order.index(reached) >= order.index(phase)
            ):
                return status
            time.sleep(0.05)
        raise RuntimeError(f"the learner did not reach phase {phase!r} within {timeout:.0f}s")

    def wait_for(
        self, predicate: Any, timeout: float = 60.0, poll_s: float = 0.1
    ) -> dict[str, Any]:
        """Wait until ``predicate(status)`` holds; the status that satisfied it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and predicate(status):
                return status
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the learner exited with code {self.process.returncode}")
            time.sleep(poll_s)
        raise TimeoutError(f"learner status did not satisfy the condition within {timeout:.0f}s")

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (one per update and published version)."""
        return self.run_dir.read_log(METRICS_LOG)

    def kill(self) -> None:
        """SIGKILL the child (no save, no acknowledgement) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the child saves and acknowledges), then SIGKILL after ``timeout``."""
        terminate(self.process, timeout)
        self.process = None
