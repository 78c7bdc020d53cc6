"""Run untrusted Python in separate, limited processes; asyncio API with a sync wrapper.

Each program runs in its own child process forked by a fork server
(:mod:`.zygote`), with: a fresh temporary working directory (removed
afterwards), a clean environment (nothing inherited, so no secrets), rlimits
on CPU time, address space, file size, open files and processes, a
wall-clock timeout enforced here, captured output capped in size (a flood
kills the program), its own session (the whole group is killed when it
ends), an audit hook blocking sockets, process creation, signals and
``ctypes``, and no network: the fork server lives in a network namespace of
its own (``unshare --net``, plus a PID namespace) when the OS allows.  When
running as root the programs run as ``nobody``.  :func:`describe` reports
the set-up in force.
"""

from __future__ import annotations

import array
import asyncio
import atexit
import contextlib
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import structlog

from hieramas.tasks.sandbox.zygote import BLOCKED_MARKER, CPU_MARKER, EXIT_MARKER

__all__ = [
    "Isolation",
    "Outcome",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "describe",
    "network_isolation",
]

log = structlog.get_logger(__name__)

Outcome = Literal[
    "ok",
    "error",
    "timeout",
    "cpu_limit",
    "memory_limit",
    "file_size_limit",
    "output_limit",
    "blocked",
    "killed",
    "early_exit",
    "unproven",
    "sandbox_error",
]
Isolation = Literal["netns", "netns-userns", "audit-hook"]

_UNSHARE_ROOT = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_UNSHARE_USER = ("unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child")


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one run."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 64
    max_output_bytes: int = 64 * 1024
    kill_output_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What one run did.  ``passed``: a program exited with status 0; a check
    (:meth:`Sandbox.run_check`) also proved that ``check`` returned (``checked``)."""

    outcome: Outcome
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    wall_s: float
    isolation: Isolation
    checked: bool = False
    calls: int = 0  # calls of the candidate's function that ``check`` made (checks only)

    @property
    def passed(self) -> bool:
        """Whether the run succeeded: outcome ``ok`` (for a check, only with the proof)."""
        return self.outcome == "ok"


@dataclass(frozen=True, slots=True)
class _Setup:
    isolation: Isolation
    prefix: tuple[str, ...]
    python: str
    user: tuple[int, int] | None  # (uid, gid) the programs run as, when we are root


@dataclass(frozen=True, slots=True)
class _Check:
    tests: str  # trusted code that defines check(candidate)
    entry: str  # the program's function that check is given


@cache
def _zygote_source() -> str:
    return resources.files("hieramas.tasks.sandbox").joinpath("zygote.py").read_text("utf-8")


class _Zygote:
    """Parent side of one fork server: submit programs, kill them, learn their exit status."""

    def __init__(self, setup: _Setup) -> None:
        self.setup = setup
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = parent
        self._lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[int]]] = {}
        self.alive = True
        argv = [*setup.prefix, setup.python, "-I", "-S", "-c", _zygote_source()]
        try:
            self._proc = subprocess.Popen(
                [*argv, f"fd={child.fileno()}"],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
            )
        finally:
            child.close()
        self._reader = threading.Thread(target=self._read, name="sandbox-zygote", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._sock.recv(65536)
            except OSError:
                msg = b""
            if not msg:
                break
            reply = json.loads(msg)
            with self._lock:
                waiter = self._waiting.pop(int(reply["job"]), None)
            if waiter is not None:
                loop, future = waiter
                with contextlib.suppress(RuntimeError):  # the loop may be closed
                    loop.call_soon_threadsafe(_settle, future, int(reply["status"]))
        self.alive = False
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for loop, future in waiting.values():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_fail, future)

    def submit(
        self, spec: dict[str, object], fds: Sequence[int]
    ) -> tuple[int, asyncio.Future[int]]:
        """Start a program; the future resolves to its exit status."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        job = next(self._jobs)
        with self._lock:
            if not self.alive:
                raise SandboxError("fork server is not running")
            self._waiting[job] = (loop, future)
            try:
                message = json.dumps({"op": "run", "job": job, **spec}).encode()
                self._sock.sendmsg(
                    [message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
            except OSError as exc:
                self._waiting.pop(job, None)
                raise SandboxError(f"fork server unreachable: {exc}") from exc
        return job, future

    def kill(self, job: int) -> None:
        """Kill a running program (and its process group)."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.send(json.dumps({"op": "kill", "job": job}).encode())

    def close(self) -> None:
        """Stop the fork server; everything it started dies with it."""
        self.alive = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._sock.close()
        self._reader.join(timeout=5)


def _settle(future: asyncio.Future[int], status: int) -> None:
    if not future.done():
        future.set_result(status)


def _fail(future: asyncio.Future[int]) -> None:
    if not future.done():
        future.set_exception(SandboxError("fork server died"))


def _spec(
    program: Path, limits: SandboxLimits, setup: _Setup, entry: str | None
) -> dict[str, object]:
    check = {} if entry is None else {"entry": entry}
    return {
        **check,
        "program": str(program),
        "cwd": str(program.parent),
        "cpu_s": max(1, int(limits.cpu_s)),
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        "file_size_bytes": limits.file_size_mb * 1024 * 1024,
        "open_files": limits.open_files,
        "processes": limits.processes,
        "uid": setup.user[0] if setup.user else None,
        "gid": setup.user[1] if setup.user else None,
    }


def _prepare(code: str, user: tuple[int, int] | None) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="hieramas-sbx-"))
    program = workdir / "main.py"
    program.write_text(code, encoding="utf-8")
    if user is not None:
        for path in (workdir, program):
            os.chown(path, *user)
    return program


# modules the fork server has not loaded: as nobody, the interpreter must still find them
_PROBE = "import fractions, statistics, decimal, heapq, datetime, encodings.idna\nprint('ok')\n"
_PROBE_PROGRAM = "import fractions\ndef f(x):\n    return fractions.Fraction(x, 2)\n"
_PROBE_CHECK = _Check("def check(f):\n    assert f(1) == 0.5\n", "f")


async def _probe(setup: _Setup) -> bool:
    if setup.prefix and shutil.which(setup.prefix[0]) is None:
        return False
    try:
        zygote = _Zygote(setup)
    except OSError:
        return False
    try:
        result = await asyncio.wait_for(_execute(zygote, _PROBE, SandboxLimits(), None), 20)
        checked = await asyncio.wait_for(
            _execute(zygote, _PROBE_PROGRAM, SandboxLimits(), None, _PROBE_CHECK), 20
        )
    except (TimeoutError, SandboxError):
        return False
    finally:
        zygote.close()
    return result.passed and result.stdout.strip() == "ok" and checked.calls == 1


def _in_thread(setup: _Setup) -> bool:
    """Probe ``setup`` on a private event loop (callers may be inside a running loop)."""
    verdict: list[bool] = []
    thread = threading.Thread(target=lambda: verdict.append(asyncio.run(_probe(setup))))
    thread.start()
    thread.join()
    return bool(verdict and verdict[0])


@cache
def _setup() -> _Setup:
    nobody: tuple[int, int] | None = None
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam("nobody")
            nobody = (entry.pw_uid, entry.pw_gid)
    options: list[_Setup] = []
    if os.geteuid() == 0:
        # as nobody, the interpreter's standard library must be readable by nobody
        if nobody is not None:
            for python in (sys.executable, "/usr/bin/python3"):
                if os.path.exists(python):
                    options.append(_Setup("netns", _UNSHARE_ROOT, python, nobody))
        options.append(_Setup("netns", _UNSHARE_ROOT, sys.executable, None))
    options.append(_Setup("netns-userns", _UNSHARE_USER, sys.executable, None))
    options.append(_Setup("audit-hook", (), sys.executable, None))
    for option in options:
        if _in_thread(option):
            log.info(
                "sandbox_setup",
                isolation=option.isolation,
                python=option.python,
                runs_as_uid=option.user[0] if option.user else os.geteuid(),
            )
            return option
    return options[-1]


def network_isolation() -> Isolation:
    """How the network is cut off for sandboxed code on this machine.

    ``netns``: an empty network namespace (root); ``netns-userns``: the same
    through an unprivileged user namespace; ``audit-hook``: only the child's
    audit hook blocks socket creation.  The audit hook is installed in all cases.
    """
    return _setup().isolation


def describe() -> dict[str, str | int | None]:
    """The sandbox set-up in force: isolation, interpreter, and the uid programs run as."""
    setup = _setup()
    return {
        "isolation": setup.isolation,
        "python": setup.python,
        "uid": setup.user[0] if setup.user else os.geteuid(),
    }


_zygotes: dict[_Setup, _Zygote] = {}
_zygote_lock = threading.Lock()


@atexit.register
def _close_zygotes() -> None:
    with _zygote_lock:
        for zygote in _zygotes.values():
            zygote.close()
        _zygotes.clear()


def _shared_zygote() -> _Zygote:
    setup = _setup()
    with _zygote_lock:
        zygote = _zygotes.get(setup)
        if zygote is None or not zygote.alive:
            if zygote is not None:
                zygote.close()
            zygote = _zygotes[setup] = _Zygote(setup)
        return zygote


def _classify(
    returncode: int | None, stderr: str, timed_out: bool, flooded: bool, proven: bool | None
) -> Outcome:
    """The outcome of a run; ``proven`` is None for a program, else whether the check proved."""
    if flooded:
        return "output_limit"
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok" if proven is not False else "unproven"
    tail = stderr[-6000:]
    if BLOCKED_MARKER in tail:
        return "blocked"
    if CPU_MARKER in tail or returncode == 128 + signal.SIGXCPU:
        return "cpu_limit"
    if "MemoryError" in tail:
        return "memory_limit"
    if "File too large" in tail or "[Errno 27]" in tail:
        return "file_size_limit"
    if EXIT_MARKER in tail:
        return "early_exit"
    if returncode is not None and returncode > 128:
        return "killed"
    return "error"


class _Capture:
    """Reads one pipe, keeping at most ``keep`` bytes; counts everything."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    async def pump(self, fd: int, flood: asyncio.Event, kill_at: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                self.total += len(chunk)
                room = self.keep - len(self.data)
                if room > 0:
                    self.data += chunk[:room]
                if self.total > kill_at:
                    flood.set()
        finally:
            transport.close()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _Proof:
    """The proof channel of one check: a socket pair whose far end only the tests process
    holds.  A random token waits on it; the tests process reads it and echoes it back,
    with the number of calls, only once ``check`` has returned."""

    def __init__(self, tests: str) -> None:
        self.token = secrets.token_hex(16).encode()
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.send(self.token)
        # unlinked: reachable only through the descriptor; closed by close()
        self.tests = tempfile.TemporaryFile()  # noqa: SIM115
        self.tests.write(tests.encode("utf-8"))
        self.tests.flush()
        self.tests.seek(0)

    def fds(self) -> list[int]:
        return [self.theirs.fileno(), self.tests.fileno()]

    def handed_over(self) -> None:
        self.theirs.close()
        self.tests.close()

    def calls(self) -> int | None:
        """Calls made by a check that ran to its end; None without a valid proof."""
        self.ours.setblocking(False)
        try:
            reply = self.ours.recv(256)
        except OSError:
            return None
        token, _, calls = reply.partition(b" ")
        if not secrets.compare_digest(token, self.token) or not calls.isdigit():
            return None
        return int(calls)

    def close(self) -> None:
        self.handed_over()
        self.ours.close()


async def _execute(
    zygote: _Zygote,
    code: str,
    limits: SandboxLimits,
    stdin: bytes | None,
    check: _Check | None = None,
) -> SandboxResult:
    setup = zygote.setup
    started = time.perf_counter()
    program = _prepare(code, setup.user)
    proof = _Proof(check.tests) if check is not None else None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    try:
        try:
            spec = _spec(program, limits, setup, check.entry if check else None)
            fds = [in_r, out_w, err_w, *(proof.fds() if proof else [])]
            job, waiter = zygote.submit(spec, fds)
        except SandboxError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            return SandboxResult("sandbox_error", None, "", str(exc), False, 0.0, setup.isolation)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            if proof is not None:
                proof.handed_over()
        if stdin:
            with contextlib.suppress(OSError):
                os.write(in_w, stdin[:65536])
        os.close(in_w)
        in_w = -1
        flood = asyncio.Event()
        out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
        pumps = [
            asyncio.create_task(out.pump(out_r, flood, limits.kill_output_bytes)),
            asyncio.create_task(err.pump(err_r, flood, limits.kill_output_bytes)),
        ]
        flooded: asyncio.Future[object] = asyncio.ensure_future(flood.wait())
        watched: set[asyncio.Future[object]] = {waiter, flooded}  # type: ignore[arg-type]
        done, _ = await asyncio.wait(
            watched, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
        )
        timed_out = not done
        was_flooded = flooded in done and waiter not in done
        flooded.cancel()
        if timed_out or was_flooded:
            zygote.kill(job)
        try:
            returncode: int | None = await asyncio.wait_for(waiter, 30)
        except (TimeoutError, SandboxError) as exc:
            for task in pumps:
                task.cancel()
            message = f"lost track of the program: {exc or 'no exit status'}"
            return SandboxResult("sandbox_error", None, "", message, False, 0.0, setup.isolation)
        _, pending = await asyncio.wait(pumps, timeout=1.0)  # escaped writers can't stall us
        for task in pending:
            task.cancel()
        calls = proof.calls() if proof is not None else None
        proven = None if proof is None else calls is not None
        outcome = _classify(returncode, err.text(), timed_out, was_flooded, proven)
        return SandboxResult(
            outcome=outcome,
            returncode=None if timed_out or was_flooded else returncode,
            stdout=out.text(),
            stderr=err.text(),
            truncated=out.total > len(out.data) or err.total > len(err.data),
            wall_s=time.perf_counter() - started,
            isolation=setup.isolation,
            checked=outcome == "ok" and bool(proven),
            calls=calls or 0,
        )
    finally:
        if in_w != -1:
            os.close(in_w)
        if proof is not None:
            proof.close()
        shutil.rmtree(program.parent, ignore_errors=True)


class Sandbox:
    """Runs programs in isolated child processes, at most ``max_concurrency`` at a time."""

    def __init__(self, limits: SandboxLimits | None = None, max_concurrency: int = 2) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.limits = limits or SandboxLimits()
        self.max_concurrency = max_concurrency
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def isolation(self) -> Isolation:
        """The network isolation in force (see :func:`network_isolation`)."""
        return _setup().isolation

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.max_concurrency)
        return gate

    async def run(
        self, code: str, *, limits: SandboxLimits | None = None, stdin: bytes | None = None
    ) -> SandboxResult:
        """Run ``code`` as ``__main__``; never raises for anything the code does."""
        if not _setup.cache_info().currsize:
            await asyncio.to_thread(_setup)  # the first call probes the OS (a few 100 ms)
        async with self._gate():
            return await _execute(_shared_zygote(), code, limits or self.limits, stdin)

    async def run_check(
        self, program: str, tests: str, entry: str, *, limits: SandboxLimits | None = None
    ) -> SandboxResult:
        """Run ``check(candidate)`` of ``tests`` on the function ``entry`` of ``program``.

        ``program`` (untrusted) runs in one process, ``tests`` (trusted code that
        defines ``check``) in another, which calls the function over a socket
        with plain data.  ``passed`` only when ``check`` returned, proved by a
        per-run token the program cannot reach (``checked``; ``calls`` says how
        many calls were made).  ``unproven`` and ``early_exit`` are failures.
        """
        if not _setup.cache_info().currsize:
            await asyncio.to_thread(_setup)
        check = _Check(tests, entry)
        async with self._gate():
            return await _execute(_shared_zygote(), program, limits or self.limits, None, check)

    async def run_many(
        self, codes: Sequence[str], *, limits: SandboxLimits | None = None
    ) -> list[SandboxResult]:
        """Run several programs concurrently (bounded by ``max_concurrency``), in order."""
        return list(await asyncio.gather(*(self.run(c, limits=limits) for c in codes)))

    def run_sync(self, code: str, *, limits: SandboxLimits | None = None) -> SandboxResult:
        """Blocking :meth:`run`; call it only where no event loop is running."""
        return asyncio.run(self.run(code, limits=limits))

    def run_many_sync(
        self, codes: Sequence[str], *, limits: SandboxLimits | None = None
    ) -> list[SandboxResult]:
        """Blocking :meth:`run_many`; call it only where no event loop is running."""
        return asyncio.run(self.run_many(codes, limits=limits))
