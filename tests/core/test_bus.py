"""The bus bridge's connection bookkeeping, against a real nats-server."""

from __future__ import annotations

import time

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer


def test_our_own_close_is_not_counted_as_a_disconnect(nats_server: NatsServer) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    bus.stop()
    assert bus.counters["disconnected"] == 0


def test_a_server_that_goes_away_is_counted_as_a_disconnect() -> None:
    server = NatsServer().start()
    bus = Bus(NatsSettings(url=server.url)).start()
    try:
        server.stop()
        deadline = time.monotonic() + 10
        while bus.counters["disconnected"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bus.counters["disconnected"] == 1
    finally:
        bus.stop(timeout=2)
        server.stop()
