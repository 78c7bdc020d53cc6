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

A run with ``"entry"`` is a *check*: two more descriptors come with it, a
proof socket and a file holding test code that defines ``check``.  The
server forks two processes.  The *candidate* runs the program (untrusted)
and then serves calls of its function ``entry`` over a socket.  The *tests*
process runs only the trusted test code and calls ``check(candidate)``,
where ``candidate`` forwards each call to the candidate process; values
cross as plain data (:func:`encode` / :func:`decode`), never as objects.
Only when ``check`` has returned does the tests process echo the token the
parent left on the proof socket, with the number of calls made.  The
candidate never holds the proof socket, the test code or the token, cannot
reach the tests process (no signals, ``/proc``, ``ctypes`` or new
processes), so no exit, monkeypatch or forged output of its own can make a
check pass.  The job's status is the tests process's.

The child, before running anything: new session, the given descriptors
as 0, 1, 2... and every other descriptor closed, working directory, environment,
rlimits (CPU, address space, file size, open files, processes), dropped
privileges (when given a uid), and an audit hook that blocks sockets,
process creation, signals, ``ctypes``, sub-interpreters and rlimit changes;
a candidate may moreover open files only in its working directory (reads
also from the standard library).  Standard library only.
"""

from __future__ import annotations

import array
import builtins
import contextlib
import fcntl
import itertools
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from typing import cast

__all__ = [
    "BLOCKED_EVENTS",
    "BLOCKED_MARKER",
    "CPU_MARKER",
    "EXIT_MARKER",
    "CandidateError",
    "decode",
    "encode",
    "main",
]

BLOCKED_MARKER = "sandbox: blocked"
CPU_MARKER = "sandbox: cpu time limit exceeded"
EXIT_MARKER = "sandbox: the program ended before the tests finished"
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
    "cpython.PyInterpreterState_New",  # a sub-interpreter would run without the audit hook
)
# extension modules that start processes without any audit event: never (re)loaded
BLOCKED_IMPORTS = ("_posixsubprocess",)
# imported here once so that forked programs find them loaded
_WARM = ("typing", "math", "re", "collections", "itertools", "functools", "hashlib", "string")
_FRAME = struct.Struct("!I")
_MAX_FRAME = 16 << 20  # bytes of one call or reply
_MAX_DEPTH = 100  # nesting of a value that crosses processes
_MAX_ITEMS = 1_000_000  # items taken from a returned iterator
_EXACT_INT = 1 << 53
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_READABLE = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/usr/share/zoneinfo")
_STREAMS = ("/dev/stdin", "/dev/stdout", "/dev/stderr")


class CandidateError(Exception):
    """The candidate's function failed, ended its process, or replied with something unreadable."""


def _blocked(what: str) -> PermissionError:
    return PermissionError(f"{BLOCKED_MARKER}: {what} is not allowed")


def _guard(event: str, args: tuple[object, ...]) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise _blocked(event)
    if event == "import" and str(args[0]).rpartition(".")[2] in BLOCKED_IMPORTS:
        raise _blocked(f"import {args[0]}")


def _no_fork_exec(*args: object) -> None:
    raise _blocked("_posixsubprocess.fork_exec")


def _file_guard(workdir: str) -> Callable[[str, tuple[object, ...]], None]:
    """Audit hook of a candidate: :func:`_guard`, and files opened only where allowed.

    Writes go to ``workdir`` (and ``/dev/null``); reads also come from the
    standard library and a few devices.  Links cannot be made, so the real path
    checked here is the one opened.  Keeps a candidate from the test data on disk,
    from ``/proc`` (other processes' memory and descriptors) and from files the
    tests process imports.
    """
    write = (os.path.realpath(workdir), "/dev/null")
    read = write + tuple(os.path.realpath(p) for p in sys.path if p) + _READABLE

    def allowed(real: str, roots: tuple[str, ...]) -> bool:
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)

    def hook(event: str, args: tuple[object, ...]) -> None:
        _guard(event, args)
        if event in ("os.symlink", "os.link"):
            raise _blocked(event)
        if event != "open" or isinstance(args[0], int):
            return
        name = os.fsdecode(args[0])  # type: ignore[arg-type]
        if name in _STREAMS:
            return
        mode, flags = args[1], args[2]
        writes = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) and flags >= 0 else False
        writes = writes or (isinstance(mode, str) and any(c in mode for c in "wax+"))
        if not allowed(os.path.realpath(name), write if writes else read):
            raise _blocked(f"open {name!r}")

    return hook


# --- values that cross processes ----------------------------------------------------------


class _Opaque:
    """A returned object of a type that cannot cross processes: equal only to itself."""

    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text

    def __repr__(self) -> str:
        return self.text


class _Iterated:
    """A returned iterator or other iterable: its items, iterable again, but (like a
    generator or ``map`` object) not equal to a list or tuple of them."""

    __slots__ = ("items",)

    def __init__(self, items: list[object]) -> None:
        self.items = items

    def __iter__(self) -> object:
        return iter(self.items)

    def __repr__(self) -> str:
        return f"<iterable of {len(self.items)} items>"


def _plain(value: object, depth: int = 0) -> object:
    """``value`` as JSON-able data; subclasses of built-in types become the built-in type."""
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply to return")
    if value is None or value is True or value is False:
        return value
    inner = depth + 1
    if isinstance(value, int):
        number = int.__index__(value)
        return number if -_EXACT_INT < number < _EXACT_INT else {"i": hex(number)}
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [_plain(item, inner) for item in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"t": [_plain(item, inner) for item in tuple.__iter__(value)]}
    if isinstance(value, dict):
        return {"d": [[_plain(k, inner), _plain(v, inner)] for k, v in dict.items(value)]}
    if isinstance(value, set | frozenset):
        tag = "s" if isinstance(value, set) else "f"
        return {tag: [_plain(item, inner) for item in frozenset.__iter__(frozenset(value))]}
    if isinstance(value, bytes | bytearray):
        return {"b": bytes(value).hex()}
    if isinstance(value, complex):
        return {"c": [value.real, value.imag]}
    kind = type(value)
    if kind.__module__ == "fractions" and kind.__name__ == "Fraction":
        return {"q": [hex(value.numerator), hex(value.denominator)]}  # type: ignore[attr-defined]
    if kind.__module__ in ("decimal", "_decimal") and kind.__name__ == "Decimal":
        return {"D": str(value)}
    if hasattr(kind, "__iter__"):
        items = list(itertools.islice(value, _MAX_ITEMS + 1))  # type: ignore[call-overload]
        if len(items) > _MAX_ITEMS:
            raise ValueError("returned iterator too long")
        return {"it": [_plain(item, inner) for item in items]}
    try:
        text = repr(value)[:200]
    except Exception:
        text = f"<{kind.__qualname__} object>"
    return {"o": [kind.__qualname__, text]}


def _value(node: object, depth: int = 0) -> object:
    """The value of :func:`_plain` data; raises ValueError on anything malformed."""
    if depth > _MAX_DEPTH + 1:
        raise ValueError("nested too deeply")
    inner = depth + 1
    if isinstance(node, list):
        return [_value(item, inner) for item in node]
    if not isinstance(node, dict):
        return node  # None, bool, int, float or str: json makes nothing else
    if len(node) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = node.items()
    if tag == "i" and isinstance(body, str):
        return int(body, 16)
    if tag in ("t", "s", "f", "it") and isinstance(body, list):
        items = [_value(item, inner) for item in body]
        kinds: dict[str, Callable[[list[object]], object]] = {
            "t": tuple,
            "s": set,
            "f": frozenset,
            "it": _Iterated,
        }
        return kinds[tag](items)
    if tag == "d" and isinstance(body, list):
        return {_value(k, inner): _value(v, inner) for k, v in body}
    if tag == "b" and isinstance(body, str):
        return bytes.fromhex(body)
    if tag == "c" and isinstance(body, list) and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "q" and isinstance(body, list) and len(body) == 2:
        from fractions import Fraction

        return Fraction(int(body[0], 16), int(body[1], 16))
    if tag == "D" and isinstance(body, str):
        from decimal import Decimal

        return Decimal(body)
    if tag == "o" and isinstance(body, list) and len(body) == 2:
        return _Opaque(str(body[0]), str(body[1]))
    raise ValueError(f"malformed value (tag {tag!r})")


def encode(value: object) -> bytes:
    """``value`` as bytes of plain data (JSON with tags for tuples, sets, big ints...)."""
    return json.dumps(_plain(value), separators=(",", ":")).encode()


def decode(data: bytes) -> object:
    """The value of :func:`encode` bytes: only plain data, never an object of the sender's."""
    try:
        return _value(json.loads(data))
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise CandidateError(f"unreadable value: {exc}") from None


# The framing below binds the built-ins it uses: a candidate that patches ``builtins``
# then breaks its own replies at once (and fails) instead of hanging until the wall clock.
def _send(fd: int, payload: bytes, _write: Callable[[int, memoryview], int] = os.write) -> None:
    view = memoryview(_FRAME.pack(len(payload)) + payload)
    while view:
        view = view[_write(fd, view) :]


def _read_exactly(
    fd: int,
    size: int,
    _read: Callable[[int, int], bytes] = os.read,
    _len: Callable[[bytes], int] = len,
    _min: Callable[[int, int], int] = min,
) -> bytes | None:
    chunks, left = [], size
    while left > 0:
        chunk = _read(fd, _min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= _len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> bytes | None:
    """One frame from ``fd``; None when the other side is gone."""
    header = _read_exactly(fd, _FRAME.size)
    if header is None:
        return None
    (size,) = _FRAME.unpack(header)
    if size > _MAX_FRAME:
        raise CandidateError(f"a message of {size} bytes is over the limit")
    return _read_exactly(fd, size)


def _raised(name: object, text: object) -> Exception:
    """The tests-side exception for one the candidate's function raised (same built-in type)."""
    kind = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        with contextlib.suppress(Exception):
            return kind(str(text))
    return CandidateError(f"{name}: {text}")


# --- children -----------------------------------------------------------------------------


def _on_cpu_limit(signum: int, frame: object) -> None:
    os.write(2, f"\n{CPU_MARKER}\n".encode())
    os._exit(128 + signal.SIGXCPU)


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))


def _enter(spec: dict[str, object], fds: list[int]) -> None:
    """Set-up common to every child: descriptors, session, environment, limits, user."""
    os.setsid()
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in fds]  # clear of the targets
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
    os.closerange(len(fds), 1 << 16)
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
        os.setuid(int(str(spec["uid"])))  # also makes the process non-dumpable: no /proc access
    _limit(resource.RLIMIT_NPROC, int(str(spec["processes"])))


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _program(spec: dict[str, object]) -> int:
    """Run the program as ``__main__``; its exit status."""
    path = str(spec["program"])
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [path]
    sys.addaudithook(_guard)
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": path}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SystemExit as exc:
        return _exit_status(exc)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _candidate(spec: dict[str, object]) -> int:
    """Run the program, then answer calls of its function on descriptor 3 until it closes.

    A program that raises leaves that error as the answer to every call; one
    that exits (``SystemExit``, ``os._exit``...) ends this process, and the
    tests see it gone.  Not ``__main__``, as in the reference harness.
    """
    path, entry = str(spec["program"]), str(spec["entry"])
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [path]
    sys.dont_write_bytecode = True
    sys.addaudithook(_file_guard(str(spec["cwd"])))
    namespace: dict[str, object] = {"__name__": "__candidate__", "__file__": path}
    failure = ""
    try:
        exec(compile(source, path, "exec"), namespace)
    except SystemExit as exc:
        return _exit_status(exc)
    except BaseException as exc:
        failure = "".join(traceback.format_exception(exc))[-4000:]
    function = namespace.get(entry)
    if not failure and not callable(function):
        failure = f"NameError: name {entry!r} is not defined by the program"
    while True:
        request = _receive(3)
        if request is None:
            return 0
        try:
            if failure:
                raise CandidateError(failure)
            args, kwargs = cast(tuple[tuple[object, ...], dict[str, object]], decode(request))
            reply = encode(("ok", cast(Callable[..., object], function)(*args, **kwargs)))
        except BaseException as exc:
            text = failure or "".join(traceback.format_exception(exc))[-4000:]
            reply = encode(("raise", type(exc).__name__, text))
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _send(3, reply)


def _tests(spec: dict[str, object]) -> int:
    """Run the test code (descriptor 4) and ``check(candidate)``; on return, echo the proof.

    ``candidate`` (also bound to the entry point's name) calls the function in
    the candidate process over descriptor 5; the proof socket is descriptor 3.
    """
    entry = str(spec["entry"])
    with os.fdopen(4, "rb") as handle:
        source = handle.read().decode("utf-8")
    sys.addaudithook(_guard)
    calls = 0

    def candidate(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        try:
            _send(5, encode((args, kwargs)))
            reply = _receive(5)
        except OSError:
            reply = None
        if reply is None:
            raise CandidateError(EXIT_MARKER)
        answer = decode(reply)
        if type(answer) is tuple and len(answer) == 2 and answer[0] == "ok":
            return answer[1]
        if type(answer) is tuple and len(answer) == 3 and answer[0] == "raise":
            raise _raised(answer[1], answer[2])
        raise CandidateError("malformed reply")

    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source, "<tests>", "exec"), namespace)
    namespace[entry] = candidate  # tests that call the function by name call the candidate too
    check = namespace["check"]
    assert callable(check), "the test code defines no check()"
    check(candidate)
    token = os.read(3, 256)
    os.write(3, token + b" %d" % calls)
    return 0


def _child(spec: dict[str, object], fds: list[int], role: str) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        _enter(spec, fds)
        run = {"program": _program, "candidate": _candidate, "tests": _tests}[role]
        code = run(spec)
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


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # the group may not exist yet
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def main() -> None:
    """Serve run/kill requests on the socket given as ``fd=N`` until it closes."""
    args = dict(arg.split("=", 1) for arg in sys.argv[1:])
    ctrl = socket.socket(fileno=int(args["fd"]))
    # neutered before anything can take a reference; a re-import is blocked (BLOCKED_IMPORTS)
    import _posixsubprocess

    _posixsubprocess.fork_exec = _no_fork_exec  # type: ignore[assignment]
    for name in _WARM:
        __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    jobs: dict[int, int] = {}  # pid -> job
    pids: dict[int, int] = {}  # job -> pid
    partners: dict[int, int] = {}  # job -> pid of its candidate process (checks)
    partner_jobs: dict[int, int] = {}  # pid of a candidate process -> job

    def fork(spec: dict[str, object], fds: list[int], role: str) -> int:
        pid = os.fork()
        if pid == 0:
            ctrl.close()
            _child(spec, fds, role)
        return pid

    while True:
        try:
            readable, _, _ = select.select([ctrl.fileno(), wake_r], [], [], 1.0)
        except InterruptedError:
            readable = []
        if wake_r in readable:
            os.read(wake_r, 4096)
        if ctrl.fileno() in readable:
            fds = array.array("i")
            msg, ancdata, _, _ = ctrl.recvmsg(65536, socket.CMSG_SPACE(5 * fds.itemsize))
            if not msg:
                break  # the parent is gone
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            request = json.loads(msg)
            if request["op"] == "run":
                received = list(fds)
                job = request["job"]
                if "entry" in request:  # a check: tests and candidate in two processes
                    tests_end, candidate_end = (end.detach() for end in socket.socketpair())
                    pid = fork(request, [*received[:5], tests_end], "tests")
                    partner = fork(request, [*received[:3], candidate_end], "candidate")
                    for fd in (tests_end, candidate_end):
                        os.close(fd)
                    partners[job], partner_jobs[partner] = partner, job
                else:
                    pid = fork(request, received[:3], "program")
                for fd in received:
                    os.close(fd)
                jobs[pid] = job
                pids[job] = pid
            elif request["op"] == "kill" and request["job"] in pids:
                _kill(pids[request["job"]])
                if request["job"] in partners:
                    _kill(partners[request["job"]])
        while True:  # reap programs (and orphans, as PID 1)
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in partner_jobs:  # a candidate process ended; its job goes on
                partners.pop(partner_jobs.pop(pid), None)
                continue
            job = jobs.pop(pid, None)
            if job is not None:
                pids.pop(job, None)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # anything the program left behind
                left = partners.pop(job, None)
                if left is not None:  # the candidate is done when its tests are
                    _kill(left)
                ctrl.send(json.dumps({"job": job, "status": _status(raw)}).encode())


if __name__ == "__main__":
    main()
