"""Policy versions on a real nats-server: numbered past every stored one, never rewritten,
a 'current' pointer, rollback; the controller-side provider follows them live."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from learner_support import toy_config

from hieramas.bus import Bus
from hieramas.controller.learned import PolicyMismatch
from hieramas.controller.planner import PlanRequest
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.provider import NatsPolicyProvider, provider
from hieramas.learner.store import PolicyRecord, PolicyStore, PolicyStoreError
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer

CONFIG = toy_config({"a": ("Critic", 2), "b": ("Doctor", 1)}, {"cheap": 0.1, "dear": 5.0})
OTHER = toy_config({"a": ("Critic", 3)}, {"cheap": 0.1, "dear": 5.0})  # another layout


@pytest.fixture
def bus(nats_server: NatsServer) -> Iterator[Bus]:
    running = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        yield running
    finally:
        running.stop()


def _encoder(policy: Policy, lineage: str = "L1", tag: str = ""):  # type: ignore[no-untyped-def]
    """An ``encode(version)`` that checkpoints ``policy`` as that version."""

    def encode(version: int) -> tuple[bytes, dict[str, object]]:
        meta = CheckpointMeta(
            version=version,
            parent=version - 1 or None,
            config_name="toy",
            config_version=1,
            layout=policy.layout.to_json(),
            embedder="hash-32",
            dim=32,
            hidden=policy.net.hidden,
            seed=7,
            temperature=2.0,
            metrics={"accuracy": 0.5},
        )
        return encode_checkpoint(policy, meta), {"lineage": lineage, "tag": tag, "seed": 7}

    return encode


def _policy(config=CONFIG, seed: int = 0) -> Policy:  # type: ignore[no-untyped-def]
    return Policy.create(config, HashEmbedder(32), hidden=16, seed=seed)


def test_versions_are_never_rewritten_and_rollback_moves_current(bus: Bus) -> None:
    async def scenario() -> dict[str, object]:
        store, rival = await PolicyStore(bus).open(), await PolicyStore(bus).open()
        policy = _policy()
        first = await store.publish(_encoder(policy, tag="first"))
        # two writers at once: each gets its own number, neither overwrites the other
        a, b = await asyncio.gather(
            store.publish(_encoder(policy, tag="a")), rival.publish(_encoder(policy, tag="b"))
        )
        # a writer that died after claiming a number, before its blob: later ones number past it
        await store.kv.create("meta.4", json.dumps({**first.to_json(), "version": 4}).encode())
        after_gap = await store.publish(_encoder(policy, tag="after"))
        current_before = await store.current_version()
        rolled = await store.rollback(1)
        with pytest.raises(PolicyStoreError) as missing:
            await store.rollback(4)
        with pytest.raises(PolicyStoreError) as unknown:
            await store.record(99)
        return {
            "versions": [first.version, a.version, b.version, after_gap.version],
            "tags": {r.version: r.meta["tag"] for r in await store.records()},  # type: ignore[union-attr]
            "current_before": current_before,
            "current": await store.current_version(),
            "rolled": rolled,
            "missing": missing.value.code,
            "unknown": unknown.value.code,
            "blob_ok": len(await store.blob(1)) == first.size,
        }

    seen = bus.call(scenario(), 60)
    assert seen["versions"][0] == 1 and sorted(seen["versions"][1:3]) == [2, 3]  # type: ignore[index]
    assert seen["versions"][3] == 5  # type: ignore[index]
    assert seen["tags"] == {
        1: "first",
        2: seen["tags"][2],
        3: seen["tags"][3],
        4: "first",
        5: "after",
    }  # type: ignore[index]
    assert {seen["tags"][2], seen["tags"][3]} == {"a", "b"}  # type: ignore[index]
    assert (seen["current_before"], seen["current"]) == (5, 1)
    rolled = seen["rolled"]
    assert isinstance(rolled, PolicyRecord) and rolled.version == 1 and rolled.lineage == "L1"
    assert (seen["missing"], seen["unknown"], seen["blob_ok"]) == ("missing", "not_found", True)


def test_a_blob_larger_than_the_default_chunk_is_stored_as_one_and_reads_back(bus: Bus) -> None:
    big = Policy.create(CONFIG, HashEmbedder(384), hidden=64, seed=0)  # a MiniLM-sized input

    def encode(version: int) -> tuple[bytes, dict[str, object]]:
        meta = CheckpointMeta(
            version=version, parent=None, config_name="toy", config_version=1,
            layout=big.layout.to_json(), embedder="hash-384", dim=384, hidden=64, seed=0,
        )  # fmt: skip
        return encode_checkpoint(big, meta), {"lineage": "L1"}

    async def scenario() -> tuple[int, int, int, bytes]:
        store = await PolicyStore(bus).open()
        record = await store.publish(encode)
        info = await store.obj.get_info(f"v.{record.version}")
        return record.size, int(info.chunks or 0), record.version, await store.blob(record.version)

    size, chunks, version, blob = bus.call(scenario(), 60)
    assert size > 128 * 1024 and chunks == 1 and len(blob) == size  # (blob() checks the digest)
    assert version == 1


def test_the_provider_follows_current_and_declines_configs_of_another_layout(bus: Bus) -> None:
    live = provider({"seed": 3})
    assert isinstance(live, NatsPolicyProvider)
    with pytest.raises(ValueError, match="unknown policy provider option"):
        provider({"colour": "blue"})
    bus.call(live.start(bus), 30)
    try:
        assert live.current() is None  # nothing published yet
        store = bus.call(PolicyStore(bus).open(), 10)
        bus.call(store.publish(_encoder(_policy(seed=1))), 30)
        loaded = _wait_version(live, 1)
        explore = loaded.assign(CONFIG, PlanRequest("What is 2+2?", explore=True))
        greedy = loaded.assign(CONFIG, PlanRequest("What is 2+2?"))
        with pytest.raises(PolicyMismatch):
            loaded.assign(OTHER, PlanRequest("What is 2+2?"))

        bus.call(store.publish(_encoder(_policy(seed=2))), 30)
        assert _wait_version(live, 2) is not loaded
        bus.call(store.rollback(1), 30)
        back = _wait_version(live, 1)
    finally:
        bus.call(live.stop(), 10)
    assert (explore.policy_version, explore.sampled, explore.temperature) == (1, True, 2.0)
    assert explore.log_probs is not None and len(explore.log_probs) == 5  # 2 synths + 3 proposers
    assert (greedy.sampled, greedy.temperature, greedy.log_probs) == (False, None, None)
    assert set(explore.proposers) == {"a", "b"} and explore.edges == list(CONFIG.edges)
    assert back.version == 1 and live.counters["loaded"] == 3
    assert set(live.loaded) == {1, 2}


def _wait_version(live: NatsPolicyProvider, version: int, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = live.current()
        if current is not None and current.version == version:
            return current
        time.sleep(0.01)
    raise AssertionError(f"the provider did not load version {version}")
