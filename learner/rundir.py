"""The learner's run directory: its durable state, written atomically, and its JSONL logs.

``<run-dir>/``

- ``state.msgpack``: everything the learner needs to resume (policy, optimizer and
  trainer state, processed query ids, the trace-stream sequence it reflects,
  partial and buffered episodes, lineage, metrics history, counters).  Written to a
  temporary file, fsynced, then renamed over the old one: a crash leaves the old or
  the new state, never a torn one.
- ``episodes.jsonl``: one line per episode (graded or not), in processing order.
- ``metrics.jsonl``: one line per training update and published version.
- ``status.json``: a small summary for people and tools (pid, phase, versions,
  counters), rewritten with the state.

The logs are appended *before* the state that covers them is saved, and the state
records their sizes; on start, :meth:`RunDir.restore_logs` cuts them back to those
sizes.  Lines written after the last state (whose traces will be read again) are
thus dropped, and every episode and update appears exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["EPISODES_LOG", "METRICS_LOG", "STATE_FILE", "STATUS_FILE", "RunDir", "RunDirError"]

STATE_FILE = "state.msgpack"
STATUS_FILE = "status.json"
EPISODES_LOG = "episodes.jsonl"
METRICS_LOG = "metrics.jsonl"
STATE_FORMAT = 1


class RunDirError(RuntimeError):
    """A state file that cannot be read (the learner refuses to start over it silently)."""


class RunDir:
    """One learner's run directory (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _file(self, name: str) -> Path:
        return self.path / name

    def load_state(self) -> dict[str, Any] | None:
        """The saved state (``None`` for a fresh run directory); :class:`RunDirError` if unreadable."""
        path = self._file(STATE_FILE)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as exc:
            raise RunDirError(f"{path}: not a learner state: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise RunDirError(f"{path}: unknown state format {state.get('format')!r}")
        return state

    def save_state(self, state: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Write ``state`` atomically (with the current log sizes), then ``status.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        full = {**state, "format": STATE_FORMAT, "logs": self.log_sizes()}
        _atomic_write(self._file(STATE_FILE), msgspec.msgpack.encode(full))
        _atomic_write(
            self._file(STATUS_FILE), json.dumps(dict(status), indent=1).encode(), sync=False
        )

    def write_status(self, status: Mapping[str, Any]) -> None:
        """Rewrite ``status.json`` alone (e.g. the phase before any state exists)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            self._file(STATUS_FILE), json.dumps(dict(status), indent=1).encode(), sync=False
        )

    def read_status(self) -> dict[str, Any] | None:
        """``status.json``, or ``None`` if there is none (yet) or it is being replaced."""
        try:
            data = json.loads(self._file(STATUS_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def append(self, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append JSON lines to log ``name`` and fsync them."""
        lines = "".join(json.dumps(dict(row), separators=(",", ":")) + "\n" for row in rows)
        if not lines:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with self._file(name).open("a") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def log_sizes(self) -> dict[str, int]:
        """The byte size of each log."""
        sizes = {}
        for name in (EPISODES_LOG, METRICS_LOG):
            try:
                sizes[name] = self._file(name).stat().st_size
            except FileNotFoundError:
                sizes[name] = 0
        return sizes

    def restore_logs(self, state: Mapping[str, Any] | None) -> None:
        """Cut the logs back to the sizes ``state`` recorded (to nothing for a fresh run)."""
        sizes = dict((state or {}).get("logs") or {})
        for name in (EPISODES_LOG, METRICS_LOG):
            path = self._file(name)
            if not path.exists():
                continue
            with path.open("r+b") as fh:
                fh.truncate(int(sizes.get(name, 0)))
                fh.flush()
                os.fsync(fh.fileno())

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """Every line of log ``name`` (an empty list if it does not exist)."""
        try:
            text = self._file(name).read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _atomic_write(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if sync:  # the rename itself must survive a crash of the machine
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
