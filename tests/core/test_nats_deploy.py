"""NATS authentication and a three-server cluster, as deployed across machines (on loopback)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from accounts_support import NATS_DEPLOY, ROLES, password_variable

from hieramas.bus import Bus, BusError
from hieramas.controller.client import HieraClient
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer, free_port
from hieramas.stack import Stack
from support import config_yaml, node


def test_user_password_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    with NatsServer(extra_args=["--user", "hm", "--pass", "s3cret-pw"]) as server:
        with pytest.raises(BusError, match=r"Authorization Violation"):
            Bus(NatsSettings(url=server.url, connect_timeout_s=1)).start(timeout=3)
        monkeypatch.setenv("HIERAMAS_NATS_USER", "hm")
        monkeypatch.setenv("HIERAMAS_NATS_PASSWORD", "s3cret-pw")
        bus = Bus(NatsSettings.from_env(server.url)).start()
        try:
            assert bus.nc.is_connected
        finally:
            bus.stop()


def _cluster_conf(tmp: Path, name: str, port: int, route: int, peers: list[int]) -> Path:
    """deploy/nats/cluster-a.conf for one loopback member (name, ports and routes changed, as
    its comment says to; the store is NatsServer's), with users.conf beside it."""
    text = (NATS_DEPLOY / "cluster-a.conf").read_text()
    routes = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in peers)
    for pattern, value in (
        (r"server_name: \S+", f"server_name: {name}"),
        (r"^listen: \S+", f"listen: 127.0.0.1:{port}"),
        (r"store_dir: \S+", ""),  # NatsServer passes its own
        (r"  listen: \S+", f"  listen: 127.0.0.1:{route}"),
        (r"(?s)routes: \[.*?\]", f"routes: [\n{routes}\n  ]"),
    ):
        text, n = re.subn(pattern, lambda _, v=value: v, text, count=1, flags=re.M)
        assert n == 1, f"cluster-a.conf has no {pattern}"
    conf = tmp / f"{name}.conf"
    conf.write_text(text)
    shutil.copy(NATS_DEPLOY / "users.conf", tmp / "users.conf")
    return conf


def test_query_across_a_three_server_cluster(
    tmp_path: Path, llm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped cluster-a.conf and users.conf on three servers: the controller on one and
    the worker on another, each with its own login; only NATS connects them."""
    passwords = {role: f"pw-{role}-{i}" for i, role in enumerate(ROLES)}
    for role, password in passwords.items():
        monkeypatch.setenv(password_variable(role), password)
    ports = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    servers = []

    def login(role: str, server: NatsServer) -> NatsSettings:
        return NatsSettings(url=server.url, user=role, password=passwords[role])

    try:
        for i in range(3):
            conf = _cluster_conf(
                tmp_path, f"s{i}", ports[i], routes[i], [r for j, r in enumerate(routes) if j != i]
            )
            servers.append(
                NatsServer(port=ports[i], store_dir=tmp_path / f"s{i}", extra_args=["-c", str(conf)])
                .start()
            )  # fmt: skip
        for role in passwords:  # the server has read them: no process below sees another's
            monkeypatch.delenv(password_variable(role))
        worker, controller = login("worker", servers[1]), login("controller", servers[0])
        with Stack(nats_url=servers[1].url, controller=False, settings=worker) as workers:
            worker_id = workers.workers[0].worker_id
            with Stack(nats_url=servers[0].url, workers=0, settings=controller) as control:
                assert control.bus is not None
                client = HieraClient(control.bus)
                cfg = config_yaml(llm_url, {"a": node("Critic", ["fixed:A", "fixed:B"], "fixed:A")})
                control.bus.call(client.apply_config(cfg), 30)
                asker = Bus(login("client", servers[2])).start()
                try:
                    result = asker.call(HieraClient(asker).ask("Which option?", timeout_s=20), 40)
                finally:
                    asker.stop()
    finally:
        for server in servers:
            server.stop()
    assert result["status"] == "ok", result
    assert result["answer"] == "A"
    assert result["nodes"]["a"]["worker"] == worker_id
