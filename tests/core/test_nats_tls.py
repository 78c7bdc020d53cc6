"""TLS required when configured: deploy/nats/tls.conf on a real nats-server, with a
certificate made here by openssl (a throw-away CA and a server certificate for 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from accounts_support import Accounts, accounts_server

from hieramas.bus import Bus, BusError
from hieramas.controller.client import HieraClient
from hieramas.natsconn import NatsSettings
from hieramas.stack import Stack
from support import config_yaml, node

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 / localhost (EC P-256, 1 day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=hieramas-test-ca", cwd=directory)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
             cwd=directory)  # fmt: skip
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key")}


@pytest.fixture
def tls_accounts(tmp_path: Path) -> Iterator[tuple[Accounts, Path]]:
    """The shipped compose.conf + users.conf with ``include tls.conf``; and the CA file."""
    certs = make_certificates(tmp_path / "certs")
    env = {
        "HIERAMAS_NATS_SERVER_CERT": str(certs["server.pem"]),
        "HIERAMAS_NATS_SERVER_KEY": str(certs["server.key"]),
    }
    with accounts_server(tmp_path / "nats", extra="\ninclude tls.conf\n", env=env) as accounts:
        yield accounts, certs["ca.pem"]


def test_a_client_without_tls_is_refused(tls_accounts: tuple[Accounts, Path]) -> None:
    accounts, _ = tls_accounts
    port = accounts.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        info = sock.recv(4096).decode()
        assert info.startswith("INFO ") and json.loads(info[5:])["tls_required"] is True
        login = {"user": "client", "pass": accounts.passwords["client"], "verbose": True}
        sock.sendall(f"CONNECT {json.dumps(login)}\r\nPING\r\n".encode())
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert b"PONG" not in answer and b"+OK" not in answer  # plaintext goes nowhere
    assert "TLS handshake error" in accounts.server_log()
    # a client that trusts the system CAs only cannot verify this server either
    with pytest.raises(BusError):
        Bus(accounts.login("client")).start(timeout=3)


def test_tls_clients_with_the_ca_run_a_query(
    tls_accounts: tuple[Accounts, Path], llm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts, ca = tls_accounts
    controller = accounts.login("controller", tls_ca=str(ca))
    worker = accounts.login("worker", tls_ca=str(ca))
    with (
        Stack(nats_url=accounts.url, workers=0, settings=controller) as control,
        Stack(nats_url=accounts.url, controller=False, settings=worker),
    ):
        assert control.bus is not None
        cfg = config_yaml(llm_url, {"a": node("Critic", ["fixed:A"], "fixed:A")})
        assert control.bus.call(HieraClient(control.bus).apply_config(cfg), 30) == 1
        for name, value in accounts.env("client").items():  # as `hieramas ask` gets them
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HIERAMAS_NATS_TLS_CA", str(ca))
        client = Bus(NatsSettings.from_env(accounts.url)).start()
        try:
            assert client.nc.connected_server_version.major >= 2
            result = client.call(HieraClient(client).ask("Which option?", timeout_s=20), 30)
        finally:
            client.stop()
    assert result["status"] == "ok" and result["answer"] == "A"
