"""The config store: versions in JetStream KV, seen by every controller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import nats
import pytest

from hieramas.bus import Bus
from hieramas.controller.store import CONFIG_BUCKET, ConfigStore, StoredConfig
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from support import config_yaml, node

URL = "http://127.0.0.1:9/v1"


def _config(name: str) -> str:
    text: str = config_yaml(URL, {"a": node("Critic", ["fixed:A"], "fixed:A")}, name=name)
    return text


def _kv_put(nats_url: str, key: str, value: bytes | None) -> None:
    """Write (``None``: delete) one key of the config bucket with a plain nats-py client,
    as an outsider would."""

    async def put() -> None:
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(CONFIG_BUCKET)
            if value is None:
                await kv.delete(key)
            else:
                await kv.put(key, value)
        finally:
            await nc.close()

    asyncio.run(put())


@pytest.fixture
def buses(nats_server: NatsServer) -> Iterator[tuple[Bus, Bus]]:
    """Two connections, as two controllers have."""
    first = Bus(NatsSettings(url=nats_server.url)).start()
    second = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_store_that_has_not_seen_the_first_apply_yet_still_finds_it(
    buses: tuple[Bus, Bus],
) -> None:
    """Two controllers: one applies, the other answers a query before its watch catches up."""
    first, second = buses
    writer = first.call(ConfigStore(first).open(), 10)
    reader = second.call(ConfigStore(second).open(), 10)  # no watch: it cannot catch up
    assert reader.current_version == 0
    cfg = config_yaml("http://127.0.0.1:9/v1", {"a": node("Critic", ["fixed:A"], "fixed:A")})
    applied = first.call(writer.apply(cfg), 10)
    stored = second.call(reader.get(), 10)
    assert stored.version == applied.version == 1
    assert stored.config.name == applied.config.name


def test_garbage_in_current_is_rejected_and_the_watch_follows_the_next_version(
    nats_server: NatsServer, buses: tuple[Bus, Bus]
) -> None:
    first, second = buses
    seen: list[StoredConfig] = []
    writer = first.call(ConfigStore(first).open(), 10)
    assert first.call(writer.apply(_config("one")), 10).version == 1
    watcher = second.call(ConfigStore(second).open(), 10)
    watcher.on_change(seen.append)
    second.call(watcher.watch(), 10)

    _kv_put(nats_server.url, "current", b"not-a-number")
    assert _eventually(lambda: second.counters["config.bad_current"] >= 1)
    assert watcher.current_version == 1  # the garbage is not taken for a version

    applied = first.call(writer.apply(_config("two")), 10)  # reads the garbage too
    assert applied.version == 2  # numbered after the highest stored version
    assert first.counters["config.bad_current"] == 1
    assert _eventually(lambda: watcher.current_version == 2), "the watch stopped"
    assert _eventually(lambda: bool(seen) and seen[-1].version == 2)  # listeners heard
    assert second.call(watcher.get(), 10).config.name == "two"


def test_a_version_left_by_a_writer_that_died_midway_is_numbered_past_never_rewritten(
    nats_server: NatsServer, buses: tuple[Bus, Bus]
) -> None:
    import msgspec

    first, second = buses
    writer = first.call(ConfigStore(first).open(), 10)
    other = second.call(ConfigStore(second).open(), 10)
    assert first.call(writer.apply(_config("one")), 10).version == 1
    # a writer that created v.2 and died before moving `current`
    ghost = {"yaml": _config("ghost"), "applied_at": time.time(), "source": "dead"}
    _kv_put(nats_server.url, "v.2", msgspec.msgpack.encode(ghost))
    assert [r["name"] for r in second.call(other.history(), 10)] == ["one", "ghost"]
    applied = first.call(writer.apply(_config("two")), 10)
    assert applied.version == 3  # past the leftover, which is never made current
    # every controller reads every number the same way, cached or not
    assert second.call(other.get(2), 10).config.name == "ghost"
    assert second.call(other.get(3), 10).config.name == "two"
    assert second.call(other._read_current(), 10) == 3
    assert first.call(writer.apply(_config("three")), 10).version == 4


def test_an_apply_after_current_was_deleted_numbers_after_the_stored_versions(
    nats_server: NatsServer,
) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        store = bus.call(ConfigStore(bus).open(), 10)
        for name in ("one", "two"):
            bus.call(store.apply(_config(name)), 10)

        _kv_put(nats_server.url, "current", None)
        applied = bus.call(store.apply(_config("three")), 10)
        assert applied.version == 3  # not 1 again: version 1 is never rewritten
        assert bus.call(store._read_current(), 10) == 3
        fresh = bus.call(ConfigStore(bus).open(), 10)  # nothing cached
        assert [bus.call(fresh.get(v), 10).config.name for v in (1, 2, 3)] == [
            "one",
            "two",
            "three",
        ]
    finally:
        bus.stop()


def test_concurrent_applies_from_two_controllers_get_distinct_immutable_versions(
    buses: tuple[Bus, Bus],
) -> None:
    stores = [bus.call(ConfigStore(bus).open(), 10) for bus in buses]

    async def burst(store: ConfigStore, who: str) -> list[tuple[int, str]]:
        applied = await asyncio.gather(*(store.apply(_config(f"{who}{i}")) for i in range(6)))
        return [(a.version, a.config.name) for a in applied]

    futures = [
        bus.run(burst(store, who)) for bus, store, who in zip(buses, stores, "ab", strict=True)
    ]
    results = [pair for future in futures for pair in future.result(60)]
    versions = [version for version, _ in results]
    assert len(set(versions)) == 12  # nobody got a number twice
    reader = buses[0].call(ConfigStore(buses[0]).open(), 10)  # nothing cached
    for version, name in results:  # each number holds what its writer wrote
        assert buses[0].call(reader.get(version), 10).config.name == name
    assert buses[0].call(reader._read_current(), 10) == max(versions)


def test_listeners_hear_each_version_once_also_those_the_store_applied_itself(
    nats_server: NatsServer, buses: tuple[Bus, Bus]
) -> None:
    first, _ = buses
    seen: list[int] = []
    store = first.call(ConfigStore(first).open(), 10)
    store.on_change(lambda stored: seen.append(stored.version))
    first.call(store.watch(), 10)
    for name in ("one", "two"):
        first.call(store.apply(_config(name)), 10)  # sets current_version before its watch sees it
    assert _eventually(lambda: seen == [1, 2]), seen
    time.sleep(0.3)
    assert seen == [1, 2]  # and nobody hears a version twice


def test_an_empty_listing_while_a_version_is_current_is_made_again(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's key listing (a watcher) can end before its entries arrive on a loaded
    machine: the store lists again rather than report no versions."""
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        store = bus.call(ConfigStore(bus).open(), 10)
        for name in ("one", "two"):
            bus.call(store.apply(_config(name)), 10)
        real_keys = store.kv.keys
        short = [nats.js.errors.NoKeysError(), nats.js.errors.NoKeysError()]

        async def flaky_keys() -> list[str]:
            if short:
                raise short.pop()
            return await real_keys()

        monkeypatch.setattr(store.kv, "keys", flaky_keys)
        assert [row["version"] for row in bus.call(store.history(), 10)] == [1, 2]
        assert bus.counters["config.versions_relisted"] == 2
    finally:
        bus.stop()
