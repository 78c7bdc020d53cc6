"""A run directory's lock and its child processes, so a killed run can be resumed cleanly.

The embedded stack's servers (nats-server, the emulator, the learner) run in
process groups of their own, so a driver killed with SIGKILL leaves them running:
a nats-server still holding the run's JetStream directory, a learner still
consuming.  The driver records each child by pid *and* start time (field 22 of
``/proc/<pid>/stat``); the next run on the same directory stops exactly those
processes, if they still run, before it starts its own.  A recycled pid has
another start time and is left alone.  The lock (``flock``, released by the
kernel when its holder dies) keeps two live drivers off one run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["RunBusyError", "lock_run", "reap_children", "record_children"]

CHILDREN = "children.json"
LOCK = "driver.lock"


class RunBusyError(RuntimeError):
    """Another live process holds the run directory."""


def lock_run(run_dir: Path) -> FileLock:
    """Hold ``run_dir``'s lock (:class:`RunBusyError` if another process holds it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunBusyError(f"{run_dir} is in use by another run") from None
    return lock


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: count fields after its closing ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # dead, not yet reaped (an orphan's reaper may be slow)
        return None
    return int(fields[19])


def record_children(run_dir: Path, pids: Mapping[str, int | None]) -> None:
    """Remember ``pids`` (name -> pid) with their start times."""
    rows = {name: {"pid": pid, "start": _start_time(pid)} for name, pid in pids.items() if pid}
    tmp = run_dir / f".{CHILDREN}.tmp"
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, run_dir / CHILDREN)


def reap_children(
    run_dir: Path, order: tuple[str, ...] = ("learner", "emulator", "nats")
) -> list[str]:
    """Stop the recorded children that still run (SIGTERM, then SIGKILL after 15 s); their names."""
    path = run_dir / CHILDREN
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    names = sorted(rows, key=lambda n: order.index(n) if n in order else len(order))
    reaped = []
    for name in names:
        pid, start = int(rows[name]["pid"]), rows[name].get("start")
        if start is None or _start_time(pid) != start:
            continue  # gone, or the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        while _start_time(pid) == start and time.monotonic() < deadline:
            time.sleep(0.05)
        if _start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _start_time(pid) == start and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        reaped.append(name)
    path.unlink(missing_ok=True)
    return reaped
