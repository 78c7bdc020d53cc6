"""Machines on one box: network namespaces joined by veth pairs to a bridge (Linux, root).

Each :class:`Host` is a namespace with its own loopback and one interface, ``eth0``, whose
peer hangs on a bridge in the root namespace (which also has an address there, so this
process reaches every host).  :meth:`NetLab.partition` takes a host's link down and
:meth:`NetLab.heal` brings it back.  Names carry a random run id and the owner's pid,
so parallel runs never collide and :func:`sweep` can remove what a killed run left.
The chaos suite (``tests/chaos/``) and ``bench/soak.py`` build their clusters on it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import structlog

from hieramas.processes import spawn

__all__ = ["Host", "NetLab", "NetLabError", "sweep", "unavailable"]

log = structlog.get_logger(__name__)

_NS = re.compile(r"^hm-(?P<run>[0-9a-f]{6})-(?P<pid>\d+)-h\d+$")


class NetLabError(RuntimeError):
    """A namespace, link or address could not be set up."""


def unavailable() -> str | None:
    """Why a lab cannot be built here (not root, no ``ip``), or ``None`` if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"'ip netns' does not work here: {probe.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetLabError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespace_pids(ns: str) -> list[int]:
    done = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def _remove(run_id: str, namespaces: list[str]) -> None:
    """Kill what still runs in the namespaces, delete them and the run's links."""
    for ns in namespaces:
        for pid in _namespace_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("netns", "delete", ns, check=False)  # its eth0 goes, and the veth peer with it
    links = _ip("-o", "link", "show", check=False).stdout
    for name in re.findall(rf"^\d+: (hm{run_id}[bv]\d*)[@:]", links, re.MULTILINE):
        _ip("link", "delete", name, check=False)


def sweep() -> list[str]:
    """Remove the namespaces (and links, and processes in them) of runs whose owner is dead;
    the namespaces removed."""
    if unavailable() is not None:
        return []
    stale: dict[str, list[str]] = {}
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS.match(name)
        if match and not _alive(int(match["pid"])):
            stale.setdefault(match["run"], []).append(name)
    for run_id, namespaces in stale.items():
        log.warning("netlab.sweep", run=run_id, namespaces=namespaces)
        _remove(run_id, namespaces)
    return [ns for namespaces in stale.values() for ns in namespaces]


@dataclass
class Host:
    """One "machine": a namespace, its address on the bridge and the root side of its link."""

    index: int
    ns: str
    ip: str
    link: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *args]


class NetLab:
    """``hosts`` namespaces on a private bridge; :meth:`stop` (or the exit hook) removes all."""

    def __init__(self, hosts: int = 3) -> None:
        if not 1 <= hosts <= 9:
            raise ValueError("a lab has 1 to 9 hosts")
        self.run_id = secrets.token_hex(3)
        # a random /24 in 10.200-249.x: two labs on one box almost never share one
        net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self.bridge = f"hm{self.run_id}b"
        self.bridge_ip = f"{net}.254"
        self.hosts = [
            Host(
                i, f"hm-{self.run_id}-{os.getpid()}-h{i}", f"{net}.{i + 1}", f"hm{self.run_id}v{i}"
            )
            for i in range(hosts)
        ]
        self._root_processes: list[subprocess.Popen[bytes]] = []
        self._started = False

    def start(self) -> NetLab:
        """Sweep stale labs, then build the bridge and the hosts."""
        why = unavailable()
        if why is not None:
            raise NetLabError(why)
        sweep()
        self._started = True
        atexit.register(self.stop)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                _ip("netns", "add", host.ns)
                _ip(
                    "link",
                    "add",
                    host.link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.ns,
                )
                _ip("link", "set", host.link, "master", self.bridge, "up")
                _ip("-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
                _ip("-n", host.ns, "link", "set", "eth0", "up")
                _ip("-n", host.ns, "link", "set", "lo", "up")
        except BaseException:
            self.stop()
            raise
        log.info("netlab.started", run=self.run_id, hosts=[h.ip for h in self.hosts])
        return self

    def spawn(self, host: Host | None, args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``args`` on ``host`` (``None``: the root namespace), tracked for :meth:`stop`."""
        process = spawn(host.command(args) if host is not None else args, **popen)
        if host is not None:
            host.processes.append(process)
        else:
            self._root_processes.append(process)
        return process

    def partition(self, host: Host) -> None:
        """Cut ``host`` off from the others (its link goes down; its loopback stays)."""
        _ip("link", "set", host.link, "down")
        log.info("netlab.partition", host=host.index)

    def heal(self, host: Host) -> None:
        """Reconnect a partitioned host."""
        _ip("link", "set", host.link, "up")
        log.info("netlab.heal", host=host.index)

    def stop(self) -> None:
        """Kill every process started here (its process group), delete hosts and bridge.
        Idempotent; registered with :mod:`atexit` so an aborted run cleans up too."""
        if not self._started:
            return
        self._started = False
        for process in [*self._root_processes, *(p for h in self.hosts for p in h.processes)]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        _remove(self.run_id, [h.ns for h in self.hosts])
        atexit.unregister(self.stop)
        log.info("netlab.stopped", run=self.run_id)

    def __enter__(self) -> NetLab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
