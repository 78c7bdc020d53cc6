"""Run llama.cpp's OpenAI-compatible server (``llama_cpp.server``) over the local model pool.

The server is a subprocess (:mod:`hieramas.llm.local.launcher`: the ``llama_cpp.server`` app
plus a guard against unknown model ids) started with a llama_cpp.server multi-model config
file (one entry per alias); :class:`LocalServer` waits until ``/v1/models`` answers before
reporting ready and stops the process (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import structlog

from hieramas.llm.local.assemble import find_model_file
from hieramas.llm.local.errors import LlamaCppMissingError, LocalModelError, LocalServerError
from hieramas.llm.local.specs import SMALL_MODELS, LocalModel, resolve_models
from hieramas.natsserver import free_port

__all__ = [
    "DEFAULT_N_CTX",
    "DEFAULT_N_THREADS",
    "LocalServer",
    "free_port",
    "llama_cpp_available",
    "running_local_server",
    "server_config",
]

log = structlog.get_logger(__name__)

DEFAULT_N_THREADS = 2
DEFAULT_N_CTX = 4096


def llama_cpp_available() -> bool:
    """True if ``llama_cpp.server`` (``pip install hieramas[local]``) can be imported here."""
    try:
        return importlib.util.find_spec("llama_cpp.server") is not None
    except ModuleNotFoundError:
        return False


def server_config(
    models: Sequence[tuple[LocalModel, Path]],
    *,
    host: str,
    port: int,
    n_threads: int = DEFAULT_N_THREADS,
    n_ctx: int = DEFAULT_N_CTX,
) -> dict[str, Any]:
    """The ``llama_cpp.server --config_file`` document for ``(model, gguf path)`` pairs.

    The first model is the one loaded at start; the server swaps models on demand (one
    resident at a time).  ``interrupt_requests`` is off so that a new request never cuts a
    running stream short, and ``logits_all`` is off (no logprobs, much faster prompt eval).
    """
    if not models:
        raise LocalModelError("no local model to serve")
    if n_threads < 1 or n_ctx < 256:
        raise LocalModelError(f"invalid n_threads={n_threads} / n_ctx={n_ctx}")
    entries: list[dict[str, Any]] = []
    for model, path in models:
        entry: dict[str, Any] = {
            "model": str(path),
            "model_alias": model.alias,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_threads_batch": n_threads,
            "logits_all": False,
            "verbose": False,
        }
        if model.chat_format is not None:
            entry["chat_format"] = model.chat_format
        entries.append(entry)
    return {"host": host, "port": port, "interrupt_requests": False, "models": entries}


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


class LocalServer:
    """A ``llama_cpp.server`` subprocess serving local models by alias.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.  ``port=0`` picks a free
    port.  Models must already be assembled (see :func:`hieramas.llm.local.ensure_models`).
    """

    def __init__(
        self,
        models: Iterable[str | LocalModel] | str | None = SMALL_MODELS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_threads: int = DEFAULT_N_THREADS,
        n_ctx: int = DEFAULT_N_CTX,
        model_directory: Path | None = None,
        python: str = sys.executable,
        startup_timeout_s: float = 180.0,
        inherit_output: bool = False,
    ) -> None:
        self.models = resolve_models(models)
        self.host = host
        self.port = port or free_port(host)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.model_directory = model_directory
        self.python = python
        self.startup_timeout_s = startup_timeout_s
        self.inherit_output = inherit_output
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8080/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def aliases(self) -> list[str]:
        """The model ids the server answers to."""
        return [m.alias for m in self.models]

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The server subprocess once started."""
        return self._proc

    @property
    def log_path(self) -> Path | None:
        """Where the server's output goes (``None`` when inherited)."""
        return self._log_path

    def _model_files(self) -> list[tuple[LocalModel, Path]]:
        pairs: list[tuple[LocalModel, Path]] = []
        missing: list[str] = []
        for model in self.models:
            path = find_model_file(model, self.model_directory)
            if path is None:
                missing.append(model.key)
            else:
                pairs.append((model, path))
        if missing:
            raise LocalModelError(
                f"local model(s) not assembled: {', '.join(missing)}; run "
                f"`hieramas local fetch --models {','.join(missing)}` "
                "(or scripts/install_local.sh)"
            )
        return pairs

    def start(self) -> str:
        """Start the server and wait until it answers; return :attr:`base_url`."""
        if self._proc is not None:
            raise LocalServerError("server already started")
        if self.python == sys.executable and not llama_cpp_available():
            raise LlamaCppMissingError(
                "llama-cpp-python is not installed; run scripts/install_local.sh "
                "or `pip install 'hieramas[local]'`"
            )
        pairs = self._model_files()
        self._workdir = tempfile.TemporaryDirectory(prefix="hieramas-llama-")
        workdir = Path(self._workdir.name)
        config_path = workdir / "config.json"
        config = server_config(
            pairs, host=self.host, port=self.port, n_threads=self.n_threads, n_ctx=self.n_ctx
        )
        config_path.write_text(json.dumps(config, indent=2))
        cmd = [self.python, "-m", "hieramas.llm.local.launcher", "--config_file", str(config_path)]
        if not self.inherit_output:
            self._log_path = workdir / "server.log"
            self._log_fh = self._log_path.open("wb")
        log.info("local_server.start", url=self.base_url, models=self.aliases)
        # Busy-waiting OpenMP threads collapse when the cores are shared (measured: ~1.7x
        # slower decode under load); sleep instead unless the caller chose otherwise.
        env = {**os.environ}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT if self._log_fh else None,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        started = time.monotonic()
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise LocalServerError(
                        f"llama_cpp.server exited with code {code} during startup\n"
                        f"{_tail(self._log_path)}"
                    )
                try:
                    resp = client.get(f"{self.base_url}/models")
                    if resp.status_code == 200:
                        ids = {m.get("id") for m in resp.json().get("data", [])}
                        if not set(self.aliases) <= ids:
                            raise LocalServerError(
                                f"server on {self.base_url} serves {sorted(map(str, ids))}, "
                                f"expected {self.aliases} (port taken by another server?)"
                            )
                        log.info(
                            "local_server.ready",
                            url=self.base_url,
                            startup_s=round(time.monotonic() - started, 2),
                        )
                        return
                except (httpx.TransportError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise LocalServerError(
                        f"llama_cpp.server not ready after {self.startup_timeout_s:.0f}s\n"
                        f"{_tail(self._log_path)}"
                    )
                time.sleep(0.2)

    def send_signal(self, signum: int) -> None:
        """Forward ``signum`` to the server process (if running)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            raise LocalServerError("server not started")
        return self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("local_server.kill", pid=proc.pid)
                proc.kill()
                proc.wait()
        if proc is not None:
            log.info("local_server.stopped", url=self.base_url, code=proc.returncode)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def running_local_server(
    models: Iterable[str | LocalModel] | str | None = SMALL_MODELS,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    n_threads: int = DEFAULT_N_THREADS,
    n_ctx: int = DEFAULT_N_CTX,
    model_directory: Path | None = None,
    startup_timeout_s: float = 180.0,
) -> Iterator[str]:
    """Serve ``models`` (keys or aliases) on a free loopback port; yield the ``/v1`` base URL."""
    server = LocalServer(
        models,
        host=host,
        port=port,
        n_threads=n_threads,
        n_ctx=n_ctx,
        model_directory=model_directory,
        startup_timeout_s=startup_timeout_s,
    )
    with server:
        yield server.base_url
