"""The sandbox's fork server: one long-lived process that forks a limited child per program.

Started once per set-up as ``[unshare --net --pid --fork --kill-child] python -I -S -c
<this file> fd=N``, so every program shares one empty network namespace and
one PID namespace whose PID 1 is this server: when it goes, everything it
started goes.  Forking a warm interpreter costs a few milliseconds, against
tens for a fresh ``python`` per program.

Protocol on the SOCK_SEQPACKET socket ``fd``: the parent sends JSON
``{"op": "run", "job": n, ...limits...}`` with three file descriptors
attached (stdin, stdout, stderr of the program) or ``{"op": "kill", "job": n}``;
the server answers ``{"job": n, "status": s}`` when the program ends (``s``
is the exit code, ``128 + signal`` when killed).

The child, before running the program: new session, the given descriptors
as 0/1/2 and every other descriptor closed, working directory, environment,
rlimits (CPU, address space, file size, open files, processes), dropped
privileges (when given a uid), and an audit hook that blocks sockets,
process creation, signals, ``ctypes`` and rlimit changes.  Standard library
only.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback

__all__ = ["BLOCKED_EVENTS", "BLOCKED_MARKER", "CPU_MARKER", "main"]

BLOCKED_MARKER = "sandbox: blocked"
CPU_MARKER = "sandbox: cpu time limit exceeded"
# audit events (prefixes) a program may not raise
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
# imported here once so that forked programs find them loaded
_WARM = ("typing", "math", "re", "collections", "itertools", "functools", "hashlib", "string")


def _guard(event: str, args: tuple[object, ...]) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise PermissionError(f"{BLOCKED_MARKER}: {event} is not allowed")


def _on_cpu_limit(signum: int, frame: object) -> None:
    os.write(2, f"\n{CPU_MARKER}\n".encode())
    os._exit(128 + signal.SIGXCPU)


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))


def _child(spec: dict[str, object], fds: list[int]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError(EFBIG)
        signal.signal(signal.SIGXCPU, _on_cpu_limit)  # the hard limit (+1 s) still kills
        workdir = str(spec["cwd"])
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(
            {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        )
        cpu_s = int(str(spec["cpu_s"]))
        _limit(resource.RLIMIT_CORE, 0)
        _limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
        _limit(resource.RLIMIT_AS, int(str(spec["memory_bytes"])))
        _limit(resource.RLIMIT_FSIZE, int(str(spec["file_size_bytes"])))
        _limit(resource.RLIMIT_NOFILE, int(str(spec["open_files"])))
        if spec.get("uid") is not None:
            os.setgroups([])
            os.setgid(int(str(spec["gid"])))
            os.setuid(int(str(spec["uid"])))
        _limit(resource.RLIMIT_NPROC, int(str(spec["processes"])))
        path = str(spec["program"])
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        sys.argv = [path]
        sys.addaudithook(_guard)
        namespace: dict[str, object] = {"__name__": "__main__", "__file__": path}
        try:
            exec(compile(source, path, "exec"), namespace)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code & 0xFF
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _status(raw: int) -> int:
    code = os.waitstatus_to_exitcode(raw)
    return code if code >= 0 else 128 - code


def main() -> None:
    """Serve run/kill requests on the socket given as ``fd=N`` until it closes."""
    args = dict(arg.split("=", 1) for arg in sys.argv[1:])
    ctrl = socket.socket(fileno=int(args["fd"]))
    for name in _WARM:
        __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    jobs: dict[int, int] = {}  # pid -> job
    pids: dict[int, int] = {}  # job -> pid
    while True:
        try:
            readable, _, _ = select.select([ctrl.fileno(), wake_r], [], [], 1.0)
        except InterruptedError:
            readable = []
        if wake_r in readable:
            os.read(wake_r, 4096)
        if ctrl.fileno() in readable:
            fds = array.array("i")
            msg, ancdata, _, _ = ctrl.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
            if not msg:
                break  # the parent is gone
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            request = json.loads(msg)
            if request["op"] == "run":
                pid = os.fork()
                if pid == 0:
                    ctrl.close()
                    _child(request, list(fds))
                for fd in fds:
                    os.close(fd)
                jobs[pid] = request["job"]
                pids[request["job"]] = pid
            elif request["op"] == "kill" and request["job"] in pids:
                for kill in (os.killpg, os.kill):  # the group may not exist yet
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(pids[request["job"]], signal.SIGKILL)
        while True:  # reap programs (and orphans, as PID 1)
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            job = jobs.pop(pid, None)
            if job is not None:
                pids.pop(job, None)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # anything the program left behind
                ctrl.send(json.dumps({"job": job, "status": _status(raw)}).encode())


if __name__ == "__main__":
    main()
