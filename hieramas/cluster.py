"""A HieraMAS cluster across the hosts of a :class:`~hieramas.netlab.NetLab`.

Every host runs one nats-server of a JetStream cluster (routes to the others, R3
streams and buckets through ``$HIERAMAS_JS_REPLICAS``) and one worker process;
controllers run on ``controllers`` hosts and the learner, if asked, on one more.
The emulator runs in the root namespace on the bridge, reachable from every host.
Each part is a real process (``python -m hieramas ...`` under ``ip netns exec``) that
can be killed, stopped and restarted on its own; its output goes to
``<workdir>/<name>.log``.  Used by ``tests/chaos/`` and ``bench/soak.py``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import structlog

from hieramas.natsconn import NatsSettings
from hieramas.netlab import Host, NetLab

__all__ = ["Cluster", "Part", "rss_mb"]

log = structlog.get_logger(__name__)

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222
EMULATOR_PORT = 18080


ROLES = ("controller", "worker", "learner", "exporter", "client", "observer")
"""The logins: one per component, and ``observer`` (every right: the tests' own checks)."""


def shipped_users_conf() -> Path | None:
    """``deploy/nats/users.conf`` of this checkout (the per-component logins), if there."""
    path = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "users.conf"
    return path if path.exists() else None


def _logins(*, per_component: bool) -> dict[str, tuple[str, str]]:
    """role -> (user, password): the shipped users, or one shared user for every role."""
    if not per_component:
        shared = ("hieramas", f"pw{secrets.token_hex(16)}")
        return dict.fromkeys(ROLES, shared)
    # hex after letters: the server parses an unquoted variable's value, and "5e3..." is a number
    return {role: (role, f"pw{secrets.token_hex(16)}") for role in ROLES}


def _role(name: str) -> str | None:
    """The login a part uses (``None``: the emulator and the servers use none)."""
    kind = name.split("-")[0]
    return kind if kind in ("controller", "worker", "learner") else None


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB (0.0 once it has gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Part:
    """One process of the cluster: what it is, where it runs, how it is started."""

    name: str
    host: Host | None
    args: list[str]
    ready: str  # a line its log shows once it serves (or "" for a port check)
    port: tuple[str, int] | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """nats-servers, workers, controllers, an optional learner and the emulator on a lab."""

    def __init__(
        self,
        lab: NetLab,
        workdir: Path,
        *,
        controllers: Sequence[int] = (0, 1),
        learner: int | None = None,
        learner_options: Sequence[str] = (),
        emulator_latency: float = 0.0,
        max_pending_mb: int = 16,
        log_level: str = "warning",
        users_conf: Path | None = None,
    ) -> None:
        self.lab = lab
        self.workdir = workdir
        self.hosts = lab.hosts
        workdir.mkdir(parents=True, exist_ok=True)
        self.users_conf = users_conf if users_conf is not None else shipped_users_conf()
        self.logins = _logins(per_component=self.users_conf is not None)
        self.emulator_url = f"http://{lab.bridge_ip}:{EMULATOR_PORT}/v1"
        self.env: dict[str, str] = {  # every part's environment (a client may use it too)
            **os.environ,
            "HIERAMAS_JS_REPLICAS": str(min(3, len(self.hosts))),
            "HIERAMAS_LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("HIERAMAS_NATS_URL", None)
        self.parts: dict[str, Part] = {}
        self._add_emulator(emulator_latency)
        for host in self.hosts:
            self._add_nats(host, max_pending_mb)
        for host in self.hosts:
            self._add(
                f"worker-{host.index}",
                host,
                ["worker", "--nats", self.local_url(host), "--emulator-url", self.emulator_url],
                "worker ",
            )
        for i in controllers:
            host = self.hosts[i]
            self._add(
                f"controller-{i}",
                host,
                ["controller", "--nats", self.local_url(host), "--emulator-url", self.emulator_url],
                "controller running",
            )
        if learner is not None:
            host = self.hosts[learner]
            run_dir = workdir / "learner"
            self._add(
                "learner",
                host,
                [
                    "learner",
                    "--nats",
                    self.local_url(host),
                    "--run-dir",
                    str(run_dir),
                    *list(learner_options),
                ],
                "learner running",
            )

    # -- logins ------------------------------------------------------------------------
    def settings(
        self, role: str, name: str = "hieramas", hosts: Sequence[int] | None = None
    ) -> NatsSettings:
        """Connection settings with ``role``'s login, for a client in the root namespace, to
        the servers of ``hosts`` (default: all)."""
        user, password = self.logins[role]
        chosen = self.hosts if hosts is None else [self.hosts[i] for i in hosts]
        url = ",".join(self.url(h) for h in chosen)
        return NatsSettings(url=url, name=name, user=user, password=password)

    def role_env(self, role: str | None) -> dict[str, str]:
        """The environment of a process with ``role``'s login (the servers get every
        password, as ``$HIERAMAS_NATS_PASSWORD_<ROLE>``)."""
        if role is None:
            return {
                **self.env,
                **{f"HIERAMAS_NATS_PASSWORD_{r.upper()}": p for r, (_, p) in self.logins.items()},
            }
        user, password = self.logins[role]
        return {**self.env, "HIERAMAS_NATS_USER": user, "HIERAMAS_NATS_PASSWORD": password}

    def _authorization(self) -> str:
        """The servers' logins: the shipped per-component users plus the observer, or one
        shared user."""
        if self.users_conf is None:
            return (
                "authorization {\n  user: hieramas\n  password: $HIERAMAS_NATS_PASSWORD_CLIENT\n}\n"
            )
        text = self.users_conf.read_text()
        end = text.rstrip().rfind("]")  # the end of the users list
        observer = "    { user: observer, password: $HIERAMAS_NATS_PASSWORD_OBSERVER }\n  "
        (self.workdir / "users.conf").write_text(text[:end] + observer + text[end:])
        return "include users.conf\n"

    # -- layout ------------------------------------------------------------------------
    def url(self, host: Host) -> str:
        """Client URL of ``host``'s server, from any namespace."""
        return f"nats://{host.ip}:{CLIENT_PORT}"

    def local_url(self, host: Host) -> str:
        """A part's server list: its own host's server first, then the others."""
        others = [self.url(h) for h in self.hosts if h is not host]
        return ",".join([f"nats://127.0.0.1:{CLIENT_PORT}", *others])

    @property
    def client_url(self) -> str:
        """Every server, for a client in the root namespace."""
        return ",".join(self.url(h) for h in self.hosts)

    def monitor_url(self, host: Host) -> str:
        """``host``'s nats-server monitoring endpoint (``/varz``, ``/connz``, ``/jsz``)."""
        return f"http://{host.ip}:{MONITOR_PORT}"

    def _add(self, name: str, host: Host | None, command: list[str], ready: str) -> None:
        args = [sys.executable, "-m", "hieramas", *command]
        self.parts[name] = Part(name, host, args, ready)

    def _add_emulator(self, latency: float) -> None:
        args = [
            sys.executable, "-m", "hieramas.emulator", "serve",
            "--host", self.lab.bridge_ip, "--port", str(EMULATOR_PORT),
            "--seed", "0", "--latency-scale", str(latency),
        ]  # fmt: skip
        self.parts["emulator"] = Part(
            "emulator", None, args, "", port=(self.lab.bridge_ip, EMULATOR_PORT)
        )

    def _add_nats(self, host: Host, max_pending_mb: int) -> None:
        from hieramas.natsserver import find_nats_server

        store = self.workdir / f"nats-{host.index}"
        routes = "\n".join(
            f"    nats-route://{h.ip}:{ROUTE_PORT}" for h in self.hosts if h is not host
        )
        conf = self.workdir / f"nats-{host.index}.conf"
        conf.write_text(
            f"server_name: hm-h{host.index}\n"
            f"listen: 0.0.0.0:{CLIENT_PORT}\n"
            f"http: 0.0.0.0:{MONITOR_PORT}\n"
            f"max_pending: {max_pending_mb}MB\n"  # a slow consumer is cut off beyond this
            f"write_deadline: 2s\n"
            # a host cut off leaves its routes open but silent: without pings every second,
            # its servers would go on forwarding queue-group requests to it for minutes
            f"ping_interval: 1s\nping_max: 3\n"
            f"jetstream {{\n  store_dir: {store}\n}}\n"
            f"{self._authorization()}"
        )
        if len(self.hosts) > 1:  # a lone server (a baseline) runs JetStream unclustered
            conf.write_text(
                conf.read_text()
                + f"cluster {{\n  name: hm-chaos\n  listen: 0.0.0.0:{ROUTE_PORT}\n"
                + f"  routes: [\n{routes}\n  ]\n}}\n"
            )
        self.parts[f"nats-{host.index}"] = Part(
            f"nats-{host.index}",
            host,
            [find_nats_server(), "-c", str(conf)],
            "",
            port=(host.ip, CLIENT_PORT),
        )

    # -- life cycle ----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Cluster:
        """Start everything: the emulator and the servers; then the workers, the learner and
        the controllers, all at once."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            first = ["emulator", *(f"nats-{h.index}" for h in self.hosts)]
            for name in first:
                self.launch(name)
            for name in first:
                self.wait_ready(name, timeout)
            self._wait_jetstream(timeout)
            # controllers start together: the one that finds the R3 config bucket still
            # electing its leader retries (hieramas/jsretry.py)
            rest = [n for n in self.parts if n not in first]
            for name in rest:
                self.launch(name)
            for name in rest:
                self.wait_ready(name, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, name: str) -> Part:
        """Start (or restart) one part without waiting for it."""
        part = self.parts[name]
        if part.alive():
            raise RuntimeError(f"{name} is already running")
        logfile = (self.workdir / f"{name}.log").open("ab")
        logfile.write(f"--- start {time.time():.3f}\n".encode())
        logfile.flush()
        part.process = self.lab.spawn(
            part.host,
            part.args,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=self.role_env(_role(name)),
            cwd=str(self.workdir),
        )
        logfile.close()
        return part

    def restart(self, name: str, timeout: float = 60.0) -> Part:
        """Start a stopped part again and wait until it serves."""
        self.launch(name)
        self.wait_ready(name, timeout)
        return self.parts[name]

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Wait until ``name`` accepts connections or its log (since its start) says so."""
        part = self.parts[name]
        path = self.workdir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not part.alive():
                tail = path.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited: {tail}")
            if part.port is not None:
                try:
                    with socket.create_connection(part.port, timeout=0.5):
                        return
                except OSError:
                    pass
            else:
                text = path.read_text(errors="replace")
                if part.ready in text[text.rfind("--- start") :]:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready within {timeout:.0f}s (see {path})")

    def _wait_jetstream(self, timeout: float) -> None:
        """Wait until every server reports a JetStream meta leader."""
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            while True:
                try:
                    jsz = httpx.get(f"{self.monitor_url(host)}/jsz", timeout=1).json()
                    lone = len(self.hosts) == 1 and "config" in jsz  # no cluster to lead
                    if lone or (jsz.get("meta_cluster") or {}).get("leader"):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no JetStream meta leader on host {host.index}")
                time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL one part and reap it."""
        part = self.parts[name]
        if part.alive():
            assert part.process is not None
            part.process.send_signal(signal.SIGKILL)
            part.process.wait(10)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send ``sig`` (SIGSTOP, SIGCONT, ...) to one part."""
        part = self.parts[name]
        if part.alive():
            assert part.process is not None
            part.process.send_signal(sig)

    def rss(self) -> dict[str, float]:
        """RSS in MB of every running part."""
        return {name: rss_mb(p.pid) for name, p in self.parts.items() if p.alive()}

    def varz(self, host: Host) -> dict[str, object]:
        """``host``'s nats-server ``/varz`` (its counters: slow consumers, memory, ...)."""
        data: dict[str, object] = httpx.get(f"{self.monitor_url(host)}/varz", timeout=2).json()
        return data

    def log_text(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every part: SIGTERM, then SIGKILL what still runs after a few seconds."""
        running = [p for p in self.parts.values() if p.alive()]
        for part in running:  # workers and controllers say goodbye while NATS still runs
            if part.host is None or not part.name.startswith("nats"):
                assert part.process is not None
                part.process.send_signal(signal.SIGTERM)
        for part in running:
            if not part.name.startswith("nats"):
                _reap(part, 5)
        for part in running:
            if part.name.startswith("nats") and part.alive():
                assert part.process is not None
                part.process.send_signal(signal.SIGTERM)
                _reap(part, 5)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _reap(part: Part, timeout: float) -> None:
    assert part.process is not None
    try:
        part.process.wait(timeout)
    except subprocess.TimeoutExpired:
        part.process.kill()
        part.process.wait(5)
