"""A real Arize Phoenix on loopback, for the OpenTelemetry export tests.

Phoenix pins libraries that clash with ours, so it lives in its own venv under
``~/.cache/hieramas/phoenix-venv`` (installed on first use, a few minutes; reused after).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from filelock import FileLock

from hieramas.natsserver import free_port

PHOENIX_VERSION = "20.26.1"
CACHE = Path(os.environ.get("HIERAMAS_CACHE", Path.home() / ".cache" / "hieramas"))
VENV = CACHE / "phoenix-venv"
_DONE = VENV / f".installed-{PHOENIX_VERSION}"


def ensure_phoenix(timeout_s: float = 1800) -> Path:
    """The venv's ``phoenix`` command, installing ``arize-phoenix`` first if need be."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "phoenix-venv.lock"), timeout=timeout_s):
        if not _DONE.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run(
                [*pip, f"arize-phoenix=={PHOENIX_VERSION}"], check=True, timeout=timeout_s
            )
            _DONE.touch()
    return VENV / "bin" / "phoenix"


@contextmanager
def phoenix_server(work_dir: Path, *, ready_s: float = 240.0) -> Iterator[tuple[str, int]]:
    """Phoenix serving on loopback: its base URL and pid, once ``/healthz`` answers."""
    command = ensure_phoenix()
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",  # nothing leaves the machine
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    }
    for name in list(env):  # our own OTLP settings are not Phoenix's
        if name.startswith("OTEL_"):
            del env[name]
    log = (work_dir / "phoenix.log").open("wb")
    proc = subprocess.Popen([str(command), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"phoenix exited: {(work_dir / 'phoenix.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"phoenix not ready after {ready_s:.0f}s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
