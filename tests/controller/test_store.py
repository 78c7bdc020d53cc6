"""The config store: versions in JetStream KV, seen by every controller."""

from __future__ import annotations

from hieramas.bus import Bus
from hieramas.controller.store import ConfigStore
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from support import config_yaml, node


def test_a_store_that_has_not_seen_the_first_apply_yet_still_finds_it(
    nats_server: NatsServer,
) -> None:
    """Two controllers: one applies, the other answers a query before its watch catches up."""
    first = Bus(NatsSettings(url=nats_server.url)).start()
    second = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        writer = first.call(ConfigStore(first).open(), 10)
        reader = second.call(ConfigStore(second).open(), 10)  # no watch: it cannot catch up
        assert reader.current_version == 0
        cfg = config_yaml("http://127.0.0.1:9/v1", {"a": node("Critic", ["fixed:A"], "fixed:A")})
        applied = first.call(writer.apply(cfg), 10)
        stored = second.call(reader.get(), 10)
        assert stored.version == applied.version == 1
        assert stored.config.name == applied.config.name
    finally:
        first.stop()
        second.stop()
