"""Serve the emulator in-process on a free loopback port (for tests and benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from hieramas.emulator.server import build_app

__all__ = ["running_emulator"]


@contextmanager
def running_emulator(
    *,
    profiles_path: str | Path | None = None,
    seed: int = 0,
    latency_scale: float = 0.0,
    data_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    startup_timeout_s: float = 30.0,
) -> Iterator[str]:
    """Run the emulator in a background thread; yields its base URL (``http://host:port/v1``).

    The listening socket is bound before the server starts (no port race);
    ``latency_scale`` defaults to 0 (instant replies).  The server is shut
    down when the block exits.
    """
    app = build_app(
        profiles_path=profiles_path, seed=seed, latency_scale=latency_scale, data_dir=data_dir
    )
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's own handlers would bypass hieramas.logs (and its redaction)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hieramas-emulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the emulator server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
