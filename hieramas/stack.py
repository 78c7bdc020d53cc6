"""The embedded stack: nats-server, emulator, controller, workers and a learner on one machine.

``hieramas up`` and a ``hieramas ask`` without ``--nats`` run one of these.
Every part can also point at an existing NATS (``nats_url``), in which case no
server is started.  The learner (``learner=True``) is a child process of its
own (:class:`~hieramas.learner.process.LearnerProcess`), joined to the rest only
by NATS.  :meth:`Stack.stop` stops everything it started, in reverse order, so
no process outlives it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx
import structlog

from hieramas.actors.trusted import KeyPolicy
from hieramas.actors.worker import Worker
from hieramas.bus import Bus
from hieramas.controller.config import PlannerConfig
from hieramas.controller.service import Controller
from hieramas.learner.process import LearnerProcess
from hieramas.llm.cache import ResponseCache
from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.transports import default_transport_factory
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer, free_port
from hieramas.processes import spawn, terminate

__all__ = ["EmulatorProcess", "Stack"]

log = structlog.get_logger(__name__)

YOUNG_GC_THRESHOLD = 20_000
"""Net allocations between two collections of the youngest generation once a stack runs."""


class EmulatorProcess:
    """``hieramas emulator serve`` as a subprocess on a free loopback port."""

    def __init__(
        self,
        *,
        seed: int = 0,
        latency_scale: float = 0.0,
        profiles: str | None = None,
        metrics_port: int | None = None,
    ):
        self.port = free_port()
        self.metrics_port = metrics_port  # its Prometheus /metrics, if given
        self.seed = seed
        self.latency_scale = latency_scale
        self.profiles = profiles
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> EmulatorProcess:
        args = [
            sys.executable, "-m", "hieramas.emulator", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--seed", str(self.seed), "--latency-scale", str(self.latency_scale),
        ]  # fmt: skip
        if self.profiles:
            args += ["--profiles", self.profiles]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port)]
        self.process = spawn(args, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout)
        except BaseException:  # failed, timed out or interrupted: never leave it running
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1.0).status_code == 200:
                    log.info("emulator.started", url=self.url, seed=self.seed)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the emulator did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        terminate(self.process, 10)
        self.process = None


class Stack:
    """NATS (embedded or external) + optional emulator + controller + in-process workers."""

    def __init__(
        self,
        *,
        nats_url: str | None = None,
        state_dir: str | Path | None = None,
        controller: bool = True,
        workers: int = 1,
        nodes: set[str] | None = None,
        group: str | None = None,
        emulator: bool = False,
        emulator_url: str | None = None,
        emulator_seed: int = 0,
        emulator_latency_scale: float = 0.0,
        settings: NatsSettings | None = None,
        planner: PlannerConfig | None = None,
        key_env: Sequence[str] = (),
        learner: bool = False,
        learner_run_dir: str | Path | None = None,
        learner_options: Sequence[str] = (),
        emulator_metrics_port: int | None = None,
        llm_cache: ResponseCache | None = None,
    ) -> None:
        self._nats_url = nats_url
        self._llm_cache = llm_cache  # the workers' record/replay cache (Stage-2 data reuse)
        self._state_dir = state_dir
        self._want_controller = controller
        self._n_workers = workers
        self._nodes = nodes
        self._group = group
        self._want_emulator = emulator and emulator_url is None
        self.emulator_url = emulator_url
        self._emulator_seed = emulator_seed
        self._emulator_latency = emulator_latency_scale
        self._emulator_metrics_port = emulator_metrics_port
        self._settings = settings or NatsSettings.from_env(name="hieramas")
        self._planner = planner
        self._key_env = tuple(key_env)  # further API key variables the workers may read
        self._want_learner = learner
        self._learner_dir = learner_run_dir
        self._learner_options = list(learner_options)
        self._learner_tmp: str | None = None
        self._gc_thresholds: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
        self.learner: LearnerProcess | None = None
        self.nats: NatsServer | None = None
        self.emulator: EmulatorProcess | None = None
        self.bus: Bus | None = None
        self.controller: Controller | None = None
        self.workers: list[Worker] = []
        self._llm: OpenAIChatClient | None = None

    @property
    def url(self) -> str:
        """The NATS URL every part uses."""
        if self._nats_url:
            return self._nats_url
        assert self.nats is not None, "stack not started"
        return self.nats.url

    def start(self) -> Stack:
        try:
            if not self._nats_url:
                state = Path(self._state_dir) if self._state_dir else None
                self.nats = NatsServer(store_dir=state).start()
            if self._want_emulator:
                self.emulator = EmulatorProcess(
                    seed=self._emulator_seed,
                    latency_scale=self._emulator_latency,
                    metrics_port=self._emulator_metrics_port,
                ).start()
                self.emulator_url = self.emulator.url
            self.bus = Bus(self._settings.with_url(self.url), sender=f"stack-{os.getpid()}").start()
            if self._want_controller:
                self.controller = Controller(
                    self.bus, emulator_url=self.emulator_url, planner_spec=self._planner
                ).start()
            if self._n_workers:
                self._llm = OpenAIChatClient(
                    transport_factory=default_transport_factory(), cache=self._llm_cache
                )
                for _ in range(self._n_workers):
                    self.workers.append(
                        Worker(
                            self.bus,
                            self._llm,
                            nodes=self._nodes,
                            group=self._group,
                            key_policy=KeyPolicy.from_env(self._key_env),
                            emulator_url=self.emulator_url,
                        ).start()
                    )
            if self._want_learner:
                self.learner = LearnerProcess(
                    self.url, self._learner_run_dir(), self._learner_options
                ).start(wait="connecting")  # it loads its model while the config is applied
        except BaseException:
            self.stop()
            raise
        # Everything allocated so far (modules, configs, clients) lives as long as the process:
        # move it out of the collector's sight, so that a full collection during a query scans
        # only query-time objects (tens of ms over the start-up heap; the lone-query p99 showed it).
        # Collect first: garbage that is frozen is never freed.
        gc.collect()
        gc.freeze()
        # A query allocates thousands of short-lived objects.  At CPython's default threshold
        # (700 net allocations) the young generation is collected every few queries, and each
        # collection scans the state of every query in flight: with many in flight that was a
        # sixth of the runtime's CPU (docs/benchmarks.md).  Never lowered below the user's; given
        # back at stop.
        before = gc.get_threshold()
        young, middle, old = before
        gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)
        self._gc_thresholds = (before, gc.get_threshold())
        return self

    def _learner_run_dir(self) -> Path:
        """``<state-dir>/learner``, or a temporary directory removed at stop."""
        if self._learner_dir is not None:
            return Path(self._learner_dir)
        if self._state_dir is not None:
            return Path(self._state_dir) / "learner"
        self._learner_tmp = tempfile.mkdtemp(prefix="hieramas-learner-")
        return Path(self._learner_tmp)

    def stop(self) -> None:
        """Stop the parts in order; the child processes are stopped whatever happens first
        (they run in process groups of their own, so nothing else would stop them)."""
        try:
            if self.learner is not None:  # first: it saves its state while NATS still runs
                self.learner.stop()
                self.learner = None
            self._stop_parts()
        finally:
            if self._gc_thresholds is not None:
                before, ours = self._gc_thresholds
                if gc.get_threshold() == ours:  # as it was, unless changed again meanwhile
                    gc.set_threshold(*before)
                self._gc_thresholds = None
            if self._learner_tmp is not None:
                shutil.rmtree(self._learner_tmp, ignore_errors=True)
                self._learner_tmp = None
            if self.emulator is not None:
                self.emulator.stop()
                self.emulator = None
            if self.nats is not None:
                self.nats.stop()
                self.nats = None

    def _stop_parts(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self.controller is not None and self.bus is not None:
            try:
                self.controller.stop()
            except Exception as exc:
                log.warning("stack.controller_stop_failed", error=str(exc))
            self.controller = None
        if self._llm is not None and self.bus is not None:
            with contextlib.suppress(Exception):
                self.bus.call(self._llm.aclose(), timeout=5)
            self._llm = None
        if self.bus is not None:
            self.bus.stop()
            self.bus = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
