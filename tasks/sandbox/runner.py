"""Run untrusted Python in a separate, limited process; asyncio API with a sync wrapper.

Each run gets: a fresh temporary working directory, a clean environment
(nothing inherited, so no secrets), ``python -I -S``, rlimits on CPU time,
address space, file size, open files and processes (set in the child), a
wall-clock timeout enforced by the parent, captured output capped in size,
its own session (the whole process group is killed afterwards), and no
network: a new network namespace (``unshare --net``, with a PID namespace so
nothing outlives the run) when the OS allows, plus an audit hook in the
child that blocks sockets, process creation, signals and ``ctypes``.  When
running as root the child also drops to ``nobody``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import structlog

from hieramas.tasks.sandbox.bootstrap import BLOCKED_MARKER, CPU_MARKER

__all__ = [
    "Isolation",
    "Outcome",
    "Sandbox",
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
    "sandbox_error",
]
Isolation = Literal["netns", "netns-userns", "audit-hook"]

_UNSHARE_ROOT = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_UNSHARE_USER = ("unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child")


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
    """What one run did.  ``passed`` is true only for a clean exit with status 0."""

    outcome: Outcome
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    wall_s: float
    isolation: Isolation

    @property
    def passed(self) -> bool:
        """Whether the program exited normally with status 0."""
        return self.outcome == "ok"


@dataclass(frozen=True, slots=True)
class _Setup:
    isolation: Isolation
    prefix: tuple[str, ...]
    python: str
    user: tuple[int, int] | None  # (uid, gid) to drop to, when running as root


@cache
def _bootstrap_source() -> str:
    return resources.files("hieramas.tasks.sandbox").joinpath("bootstrap.py").read_text("utf-8")


def _command(setup: _Setup, program: Path, limits: SandboxLimits) -> list[str]:
    cfg = {
        "cpu_s": max(1, int(limits.cpu_s)),
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        "file_size_bytes": limits.file_size_mb * 1024 * 1024,
        "open_files": limits.open_files,
        "processes": limits.processes,
        "uid": setup.user[0] if setup.user else "",
        "gid": setup.user[1] if setup.user else "",
        "program": str(program),
    }
    args = [f"{key}={value}" for key, value in cfg.items()]
    return [*setup.prefix, setup.python, "-I", "-S", "-c", _bootstrap_source(), *args]


def _environ(workdir: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }


def _prepare(workdir: Path, code: str, user: tuple[int, int] | None) -> Path:
    program = workdir / "main.py"
    program.write_text(code, encoding="utf-8")
    if user is not None:
        for path in (workdir, program):
            os.chown(path, *user)
    return program


_PROBE = "import json, math, re, collections, hashlib\nprint('ok')\n"


def _works(setup: _Setup) -> bool:
    """Run a tiny program through the full machinery of ``setup``."""
    if setup.prefix and shutil.which(setup.prefix[0]) is None:
        return False
    workdir = Path(tempfile.mkdtemp(prefix="hieramas-sbx-probe-"))
    try:
        program = _prepare(workdir, _PROBE, setup.user)
        done = subprocess.run(
            _command(setup, program, SandboxLimits()),
            capture_output=True,
            timeout=20,
            check=False,
            cwd=workdir,
            env=_environ(workdir),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return done.returncode == 0 and done.stdout.strip() == b"ok"


@cache
def _setup() -> _Setup:
    pythons = [sys.executable, *(p for p in ("/usr/bin/python3",) if os.path.exists(p))]
    nobody: tuple[int, int] | None = None
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam("nobody")
            nobody = (entry.pw_uid, entry.pw_gid)
    options: list[_Setup] = []
    if os.geteuid() == 0:
        for python in pythons:  # as nobody the interpreter's stdlib must be readable
            if nobody is not None:
                options.append(_Setup("netns", _UNSHARE_ROOT, python, nobody))
        options.append(_Setup("netns", _UNSHARE_ROOT, sys.executable, None))
    options.append(_Setup("netns-userns", _UNSHARE_USER, sys.executable, None))
    options.append(_Setup("audit-hook", (), sys.executable, None))
    for option in options:
        if _works(option):
            log.info(
                "sandbox_setup",
                isolation=option.isolation,
                python=option.python,
                drops_to_uid=option.user[0] if option.user else None,
            )
            return option
    return options[-1]


def network_isolation() -> Isolation:
    """How the network is cut off for sandboxed code on this machine.

    ``netns``: a fresh network namespace (root); ``netns-userns``: the same
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


def _classify(returncode: int | None, stderr: str, timed_out: bool, flooded: bool) -> Outcome:
    if flooded:
        return "output_limit"
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    tail = stderr[-4000:]
    if BLOCKED_MARKER in tail:
        return "blocked"
    if "MemoryError" in tail:
        return "memory_limit"
    if "File too large" in tail or "[Errno 27]" in tail:
        return "file_size_limit"
    if CPU_MARKER in tail or returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "cpu_limit"
    if returncode is not None and returncode < 0:
        return "killed"
    return "error"


class _Capture:
    """Reads one stream, keeping at most ``keep`` bytes; counts everything."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    async def pump(self, stream: asyncio.StreamReader, flood: asyncio.Event, kill_at: int) -> None:
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            self.total += len(chunk)
            room = self.keep - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if self.total > kill_at:
                flood.set()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


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
        async with self._gate():
            return await self._run(code, limits or self.limits, stdin)

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

    async def _run(self, code: str, limits: SandboxLimits, stdin: bytes | None) -> SandboxResult:
        setup = _setup()
        workdir = Path(tempfile.mkdtemp(prefix="hieramas-sbx-"))
        started = time.perf_counter()
        try:
            program = _prepare(workdir, code, setup.user)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *_command(setup, program, limits),
                    stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=workdir,
                    env=_environ(workdir),
                    start_new_session=True,
                )
            except OSError as exc:
                log.warning("sandbox_start_failed", error=str(exc))
                return SandboxResult(
                    "sandbox_error", None, "", str(exc), False, 0.0, setup.isolation
                )
            return await self._supervise(proc, limits, stdin, started, setup.isolation)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _supervise(
        self,
        proc: asyncio.subprocess.Process,
        limits: SandboxLimits,
        stdin: bytes | None,
        started: float,
        isolation: Isolation,
    ) -> SandboxResult:
        assert proc.stdout is not None and proc.stderr is not None
        flood = asyncio.Event()
        out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
        pumps = [
            asyncio.create_task(out.pump(proc.stdout, flood, limits.kill_output_bytes)),
            asyncio.create_task(err.pump(proc.stderr, flood, limits.kill_output_bytes)),
        ]
        if stdin and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()
        waiter = asyncio.create_task(proc.wait())
        flooded = asyncio.create_task(flood.wait())
        done, _ = await asyncio.wait(
            {waiter, flooded}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
        )
        timed_out = not done
        was_flooded = flooded in done and waiter not in done
        flooded.cancel()
        _kill_group(proc.pid)  # the program and anything it left behind
        returncode = await waiter
        # pipes held by escaped grandchildren must not keep us waiting
        _, pending = await asyncio.wait(pumps, timeout=1.0)
        for task in pending:
            task.cancel()
        wall = time.perf_counter() - started
        outcome = _classify(returncode, err.text(), timed_out, was_flooded)
        truncated = out.total > len(out.data) or err.total > len(err.data)
        return SandboxResult(
            outcome=outcome,
            returncode=None if timed_out or was_flooded else returncode,
            stdout=out.text(),
            stderr=err.text(),
            truncated=truncated,
            wall_s=wall,
            isolation=isolation,
        )
