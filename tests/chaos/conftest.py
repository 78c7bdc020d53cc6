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
    started: list[tuple[NetLab, Cluster | None, list[Bus]]] = []

    def start(**options: Any) -> Chaos:
        lab = NetLab(3)
        buses: list[Bus] = []
        started.append((lab, None, buses))
        lab.start()
        cluster = Cluster(lab, tmp_path / "cluster", emulator_latency=0.05, **options)
        started[-1] = (lab, cluster, buses)
        cluster.start()
        for role in ("observer", "client", "controller", "worker"):
            # through the servers of hosts 0 and 1: host 2 is the one cut off, and a client
            # whose server is silently cut off waits out its own timeout (nats-py pings it
            # every 2 minutes) -- a client-side limit, not what these scenarios test
            settings = cluster.settings(role, f"chaos-{role}", hosts=(0, 1))
            buses.append(Bus(settings, sender=f"chaos-{role}").start())
        by_role = dict(zip(("observer", "client", "controller", "worker"), buses, strict=True))
        return Chaos(lab, cluster, by_role["observer"], by_role)

    try:
        yield start
    finally:
        for lab, cluster, buses in started:
            try:
                for bus in buses:
                    bus.stop()
                if cluster is not None:
                    cluster.stop()
            finally:
                lab.stop()
