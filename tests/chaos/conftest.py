"""The multi-host chaos suite: three "hosts" (network namespaces on a bridge), each with one
nats-server of a JetStream cluster and one worker, controllers on two of them, the emulator
on the bridge.  Root and ``ip netns`` are required; without them every test is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaos_support import Chaos, ChaosFactory

from hieramas.bus import Bus
from hieramas.cluster import Cluster
from hieramas.controller.client import HieraClient
from hieramas.natsconn import NatsSettings
from hieramas.netlab import NetLab, unavailable


@pytest.fixture(autouse=True)
def _needs_network_namespaces() -> None:
    why = unavailable()
    if why is not None:
        pytest.skip(f"the chaos suite builds hosts from network namespaces: {why}")


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ChaosFactory]:
    """Start a lab and a cluster (options as for :class:`Cluster`); everything is torn down
    at the end of the test, whatever happened."""
    started: list[tuple[NetLab, Cluster | None, Bus | None]] = []

    def start(**options: Any) -> Chaos:
        lab = NetLab(3)
        started.append((lab, None, None))
        lab.start()
        cluster = Cluster(lab, tmp_path / "cluster", emulator_latency=0.05, **options)
        started[-1] = (lab, cluster, None)
        cluster.start()
        settings = NatsSettings(
            url=cluster.client_url, name="chaos-client", user=cluster.user,
            password=cluster.password,
        )  # fmt: skip
        bus = Bus(settings, sender="chaos").start()
        started[-1] = (lab, cluster, bus)
        return Chaos(lab, cluster, bus, HieraClient(bus, sender="chaos"))

    try:
        yield start
    finally:
        for lab, cluster, bus in started:
            try:
                if bus is not None:
                    bus.stop()
                if cluster is not None:
                    cluster.stop()
            finally:
                lab.stop()
