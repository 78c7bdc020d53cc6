"""Child side of the sandbox: set limits, drop privileges, install the guard, run the program.

The parent passes this file's source to ``python -I -S -c`` followed by
``key=value`` arguments, so it must only use the standard library, and it
imports as little as possible (``json``, ``re`` and ``typing`` would double
the start-up time).  Limits are set here,
in the child, with ``resource``; they cannot be raised again by the program.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

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


def _guard(event: str, args: tuple[object, ...]) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise PermissionError(f"{BLOCKED_MARKER}: {event} is not allowed")


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))


CPU_MARKER = "sandbox: cpu time limit exceeded"


def _on_cpu_limit(signum: int, frame: object) -> None:
    os.write(2, f"\n{CPU_MARKER}\n".encode())
    os._exit(128 + signal.SIGXCPU)


def _run_program(cfg: dict[str, str]) -> None:
    _limit(resource.RLIMIT_CORE, 0)
    cpu_s = int(cfg["cpu_s"])
    _limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
    _limit(resource.RLIMIT_AS, int(cfg["memory_bytes"]))
    _limit(resource.RLIMIT_FSIZE, int(cfg["file_size_bytes"]))
    _limit(resource.RLIMIT_NOFILE, int(cfg["open_files"]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError(EFBIG)
    signal.signal(signal.SIGXCPU, _on_cpu_limit)  # the hard limit (+1 s) still kills
    if cfg.get("uid"):
        os.setgroups([])
        os.setgid(int(cfg["gid"]))
        os.setuid(int(cfg["uid"]))
    _limit(resource.RLIMIT_NPROC, int(cfg["processes"]))
    path = cfg["program"]
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    code = compile(source, path, "exec")
    sys.argv = [path]
    sys.addaudithook(_guard)
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": path}
    exec(code, namespace)


def main() -> None:
    """Fork; the child applies the ``key=value`` arguments and runs the ``program`` file.

    The parent only waits and exits with the child's status (``128 + signal``
    when killed).  In a PID namespace it is PID 1, so everything the program
    started dies with it.
    """
    cfg = dict(arg.split("=", 1) for arg in sys.argv[1:])
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
