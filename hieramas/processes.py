"""Child processes: started in a process group of their own, stopped politely, then firmly."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Any

__all__ = ["spawn", "stop_on_signals", "terminate", "unwind_on_signals"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # besides Ctrl-C: kill, a closed terminal


def spawn(args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start a child server in a process group of its own.

    A terminal's Ctrl-C (or a closed terminal) then reaches only its owner, which drains
    its connections first and stops the child with :func:`terminate`.  The owner must
    stop it on every way out, a failed or interrupted start included.
    """
    return subprocess.Popen(args, process_group=0, **popen)


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM ``process``, wait up to ``timeout`` seconds, then SIGKILL; reap it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def unwind_on_signals() -> None:
    """Make SIGTERM and SIGHUP (a closed terminal) raise ``KeyboardInterrupt`` like Ctrl-C.

    For commands that run an embedded stack to completion: the stack's ``with``
    block then stops its child processes, which sit in process groups of their own
    and would otherwise outlive the command.  Call from the main thread.
    """
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)


def stop_on_signals() -> threading.Event:
    """An event that Ctrl-C, SIGTERM or SIGHUP sets, for commands that serve until stopped.

    Install it before start-up: a signal that comes while the stack starts then still
    ends in a clean shutdown once it has started, rather than a kill.  Main thread only.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, *_STOP_SIGNALS):
        signal.signal(sig, lambda *_: stop.set())
    return stop
