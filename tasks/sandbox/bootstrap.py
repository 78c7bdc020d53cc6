"""Child side of the sandbox: set limits, drop privileges, install the guard, run the program.

The parent passes this file's source to ``python -I -S -c`` with one JSON
argument, so it must only use the standard library.  Limits are set here,
in the child, with ``resource``; they cannot be raised again by the program.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import Any

__all__ = ["BLOCKED_EVENTS", "BLOCKED_MARKER", "CPU_MARKER", "main"]

BLOCKED_MARKER = "sandbox: blocked"
# audit events (prefixes) the program may not raise: network, new processes, signals to
# other processes, native code and limit changes
BLOCKED_EVENTS = (
    "socket.",
    "os.fork",
    "os.forkpty",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.kill",
    "os.killpg",
    "os.setuid",
    "os.setgid",
    "os.setreuid",
    "os.setresuid",
    "subprocess.Popen",
    "pty.spawn",
    "ctypes.",
    "signal.pthread_kill",
    "resource.setrlimit",
    "resource.prlimit",
    "webbrowser.open",
)


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise PermissionError(f"{BLOCKED_MARKER}: {event} is not allowed")


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))


CPU_MARKER = "sandbox: cpu time limit exceeded"


def _on_cpu_limit(signum: int, frame: object) -> None:
    os.write(2, f"\n{CPU_MARKER}\n".encode())
    os._exit(128 + signal.SIGXCPU)


def _run_program(cfg: dict[str, Any]) -> None:
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
    _limit(resource.RLIMIT_AS, cfg["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, cfg["file_size_bytes"])
    _limit(resource.RLIMIT_NOFILE, cfg["open_files"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError(EFBIG)
    signal.signal(signal.SIGXCPU, _on_cpu_limit)  # the hard limit (+1 s) still kills
    if cfg.get("uid") is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    _limit(resource.RLIMIT_NPROC, cfg["processes"])
    path = cfg["program"]
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    code = compile(source, path, "exec")
    sys.argv = [path]
    sys.addaudithook(_guard)
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": path}
    exec(code, namespace)


def main() -> None:
    """Fork; the child applies the JSON config in ``sys.argv[1]`` and runs its ``program``.

    The parent only waits and exits with the child's status (``128 + signal``
    when killed).  In a PID namespace it is PID 1, so everything the program
    started dies with it.
    """
    cfg = json.loads(sys.argv[1])
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _run_program(cfg)
        return
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
