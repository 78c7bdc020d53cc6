"""Stopping child processes politely, then firmly."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["terminate", "unwind_on_signals"]


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
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
