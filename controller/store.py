"""Versioned configs in a JetStream key-value bucket.

Keys: ``v.<N>`` holds the YAML text of version N (never rewritten) and
``current`` holds the number of the version in force.  Applying is a
compare-and-set on ``current``, so concurrent applies (a user, the learner)
never lose a version.  Every process that cares watches ``current``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hieramas.bus import Bus
from hieramas.controller.config import HieraConfig, parse_config

__all__ = ["CONFIG_BUCKET", "ConfigStore", "StoredConfig"]

log = structlog.get_logger(__name__)

CONFIG_BUCKET = "hieramas_configs"
CURRENT = "current"


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """One applied version."""

    version: int
    yaml: str
    config: HieraConfig
    applied_at: float
    source: str


class ConfigStore:
    """Config versions in JetStream KV, with an in-memory cache kept fresh by a watch."""

    def __init__(self, bus: Bus, *, bucket: str = CONFIG_BUCKET) -> None:
        self.bus = bus
        self.bucket = bucket
        self._kv: KeyValue | None = None
        self._cache: dict[int, StoredConfig] = {}
        self.current_version = 0
        self._watch_task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[StoredConfig], None]] = []

    async def open(self) -> ConfigStore:
        """Create or bind the bucket and load the current version."""
        try:
            self._kv = await self.bus.js.key_value(self.bucket)
        except Exception:
            self._kv = await self.bus.js.create_key_value(
                KeyValueConfig(bucket=self.bucket, history=16, description="HieraMAS configs")
            )
        self.current_version = await self._read_current()
        return self

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("ConfigStore.open() was not awaited")
        return self._kv

    def on_change(self, listener: Callable[[StoredConfig], None]) -> None:
        """Call ``listener`` (on the loop) whenever a new version becomes current."""
        self._listeners.append(listener)

    async def watch(self) -> None:
        """Follow ``current`` in the background."""
        watcher = await self.kv.watch(CURRENT, include_history=False)

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                version = int(entry.value)
                if version == self.current_version and version in self._cache:
                    continue
                try:
                    stored = await self.get(version)
                except Exception as exc:
                    log.error("config.watch_load_failed", version=version, error=str(exc))
                    continue
                self.current_version = version
                log.info("config.current", version=version, name=stored.config.name)
                for listener in self._listeners:
                    listener(stored)

        self._watch_task = asyncio.get_running_loop().create_task(follow())

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def apply(self, yaml_text: str, *, source: str = "user") -> StoredConfig:
        """Validate and store a new version, then make it current. ``ConfigError`` if invalid."""
        config = parse_config(yaml_text)
        for _ in range(20):
            try:
                entry = await self.kv.get(CURRENT)
                current, revision = int(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                current, revision = 0, 0
            version = current + 1
            applied_at = time.time()
            record = {"yaml": yaml_text, "applied_at": applied_at, "source": source}
            try:
                await self.kv.create(f"v.{version}", msgspec.msgpack.encode(record))
            except Exception:  # another writer took this number: retry with the next one
                await asyncio.sleep(0.005)
                continue
            try:
                await self.kv.update(CURRENT, str(version).encode(), last=revision or None)
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
                continue
            except Exception:
                if revision:
                    raise
                await self.kv.create(CURRENT, str(version).encode())
            stored = StoredConfig(version, yaml_text, config, applied_at, source)
            self._cache[version] = stored
            self.current_version = version
            log.info("config.applied", version=version, name=config.name, source=source)
            return stored
        raise RuntimeError("could not apply the config: too many concurrent writers")

    async def get(self, version: int | None = None) -> StoredConfig:
        """A stored version (the current one by default); ``KeyError`` if there is none."""
        wanted = version or self.current_version
        if not wanted:  # the watch may not have caught up with a first apply elsewhere yet
            wanted = await self._read_current()
        if not wanted:
            raise KeyError("no config has been applied yet (hieramas config apply FILE)")
        cached = self._cache.get(wanted)
        if cached is not None:
            return cached
        try:
            entry = await self.kv.get(f"v.{wanted}")
        except KeyNotFoundError:
            raise KeyError(f"config version {wanted} does not exist") from None
        record = msgspec.msgpack.decode(entry.value or b"")
        stored = StoredConfig(
            wanted,
            record["yaml"],
            parse_config(record["yaml"]),
            float(record["applied_at"]),
            str(record.get("source", "")),
        )
        self._cache[wanted] = stored
        return stored

    async def _read_current(self) -> int:
        """The version in force according to the bucket itself (0 when none)."""
        try:
            entry = await self.kv.get(CURRENT)
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def history(self) -> list[dict[str, object]]:
        """Every stored version, oldest first: version, name, applied_at, source, current."""
        try:
            keys = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            keys = []
        versions = sorted(int(k[2:]) for k in keys if k.startswith("v."))
        rows: list[dict[str, object]] = []
        for version in versions:
            stored = await self.get(version)
            rows.append(
                {
                    "version": version,
                    "name": stored.config.name,
                    "applied_at": stored.applied_at,
                    "source": stored.source,
                    "current": version == self.current_version,
                }
            )
        return rows
