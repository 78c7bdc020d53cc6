"""The embedded nats-server: a failed or interrupted start leaves nothing running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hieramas.natsserver import NatsServer, NatsServerError


def _servers_on(store: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "nats-server"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if str(store) in line]


def test_a_server_that_will_not_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "js", extra_args=["--no-such-flag"])
    with pytest.raises(NatsServerError, match="no-such-flag"):
        server.start()
    assert server.process is None and not _servers_on(tmp_path)


def test_an_interrupted_start_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while waiting for the port: the child, in a process group of its own, must
    not be left behind."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    server = NatsServer(store_dir=tmp_path / "js")
    monkeypatch.setattr("hieramas.natsserver.socket.create_connection", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert server.process is None and not _servers_on(tmp_path)
