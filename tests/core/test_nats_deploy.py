"""NATS authentication and a three-server cluster, as deployed across machines (on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    routes = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in peers)
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"server_name: {name}\nlisten: 127.0.0.1:{port}\n"
        f"cluster {{\n  name: hmtest\n  listen: 127.0.0.1:{route}\n  routes: [\n{routes}\n  ]\n}}\n"
    )
    return conf


def test_query_across_a_three_server_cluster(tmp_path: Path, llm_url: str) -> None:
    """Controller on one server, the worker on another: only NATS connects them."""
    ports = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    servers = []
    try:
        for i in range(3):
            conf = _cluster_conf(
                tmp_path, f"s{i}", ports[i], routes[i], [r for j, r in enumerate(routes) if j != i]
            )
            servers.append(
                NatsServer(port=ports[i], store_dir=tmp_path / f"s{i}", extra_args=["-c", str(conf)])
                .start()
            )  # fmt: skip
        with Stack(nats_url=servers[1].url, controller=False) as workers:
            worker_id = workers.workers[0].worker_id
            with Stack(nats_url=servers[0].url, workers=0) as control:
                assert control.bus is not None
                client = HieraClient(control.bus)
                cfg = config_yaml(llm_url, {"a": node("Critic", ["fixed:A", "fixed:B"], "fixed:A")})
                control.bus.call(client.apply_config(cfg), 30)
                result = control.bus.call(client.ask("Which option?", timeout_s=20), 40)
    finally:
        for server in servers:
            server.stop()
    assert result["status"] == "ok", result
    assert result["answer"] == "A"
    assert result["nodes"]["a"]["worker"] == worker_id
