"""Versioned configs in a JetStream key-value bucket.

Keys: ``v.<N>`` holds the YAML text of version N (never rewritten),
``current`` holds the number of the version in force, and ``runtime.emulator_url``
the base URL of the controller's emulator (for ``kind: emulator`` endpoints).
Only the controller writes; workers read versions to resolve endpoints.  Applying is a
compare-and-set on ``current``, so concurrent applies (a user, the learner)
never lose a version.  Every process that cares watches ``current``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hieramas.bus import Bus
from hieramas.controller.config import ConfigError, HieraConfig, parse_config
from hieramas.jsretry import open_key_value, retry_transient

__all__ = ["CONFIG_BUCKET", "ConfigStore", "ContendedError", "CorruptConfigError", "StoredConfig"]

log = structlog.get_logger(__name__)

LIST_ATTEMPTS = 3
"""Listings of the stored versions made before an empty one is believed while a version is
current."""

CONFIG_BUCKET = "hieramas_configs"
CURRENT = "current"
EMULATOR_URL = "runtime.emulator_url"


class ContendedError(RuntimeError):
    """An apply that lost every compare-and-set to other writers: try again later."""


class CorruptConfigError(Exception):
    """A stored ``v.<N>`` record that cannot be read back (garbled bytes, fields or YAML)."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(f"config version {version} is corrupt in the store: {reason}")
        self.version = version


def _parse_version(raw: bytes | None) -> int:
    """The positive version number in a ``current`` value; ``ValueError`` for anything else."""
    text = (raw or b"").decode("ascii", errors="replace").strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{CURRENT!r} holds {text[:40]!r}, not a positive version number")
    return int(text)


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
        self._announced = 0
        """The version the listeners last heard of: each hears every version once, also the
        versions this store applied itself."""

    async def bind(self) -> ConfigStore:
        """Bind the existing bucket, read-only use (a worker's: it never creates the bucket);
        an exception if there is none yet."""
        self._kv = await self.bus.js.key_value(self.bucket)
        return self

    @property
    def bound(self) -> bool:
        """Whether :meth:`open` or :meth:`bind` succeeded."""
        return self._kv is not None

    async def set_emulator_url(self, url: str) -> None:
        """Record the embedded emulator's URL (the controller's), where workers find the base
        URL of ``kind: emulator`` endpoints."""
        await self.kv.put(EMULATOR_URL, url.encode())

    async def emulator_url(self) -> str | None:
        """The emulator URL the controller recorded, if any."""
        try:
            entry = await self.kv.get(EMULATOR_URL)
        except KeyNotFoundError:
            return None
        return (entry.value or b"").decode("utf-8", errors="replace") or None

    async def open(self) -> ConfigStore:
        """Create or bind the bucket and load the current version.

        Transient JetStream faults (a fresh R3 bucket electing its leader while another
        controller reads it) are retried for a bounded time (:mod:`hieramas.jsretry`); a
        refused login (``permission_denied``) fails at once."""
        what = f"open bucket {self.bucket}"
        self._kv = await open_key_value(self.bus, self.bucket, description="HieraMAS configs")
        self.current_version = await retry_transient(self._read_current, bus=self.bus, what=what)
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
        """Follow ``current`` in the background; a bad value is rejected and the watch goes on."""
        watcher = await self.kv.watch(CURRENT, include_history=False)

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                try:
                    await self._follow(entry.value)
                except Exception:  # a bug here must not end the watch for good
                    self.bus.counters["config.watch_failed"] += 1
                    log.exception("config.watch_failed")

        self._watch_task = asyncio.get_running_loop().create_task(follow())
        self._watch_task.add_done_callback(self._watch_ended)

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """A watch that stops other than by :meth:`close` is logged and counted, not silent."""
        if not task.cancelled() and task.exception() is not None:
            self.bus.counters["config.watch_ended"] += 1
            log.error("config.watch_ended", error=repr(task.exception()))

    async def _follow(self, raw: bytes) -> None:
        """Make the version named by a new ``current`` value the one in force."""
        try:
            version = _parse_version(raw)
        except ValueError as exc:
            self._reject_current(str(exc))
            return
        if version == self._announced:  # not current_version: apply() sets it before this runs
            return
        try:
            stored = await self.get(version)
        except Exception as exc:
            self.bus.counters["config.watch_load_failed"] += 1
            log.error("config.watch_load_failed", version=version, error=str(exc))
            return
        self.current_version = version
        self._announced = version
        log.info("config.current", version=version, name=stored.config.name)
        for listener in self._listeners:
            try:
                listener(stored)
            except Exception:
                self.bus.counters["config.listener_failed"] += 1
                log.exception("config.listener_failed", version=version)

    def _reject_current(self, reason: str) -> None:
        self.bus.counters["config.bad_current"] += 1
        log.error("config.bad_current", bucket=self.bucket, reason=reason)

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def apply(self, yaml_text: str, *, source: str = "user") -> StoredConfig:
        """Validate and store a new version, then make it current. ``ConfigError`` if invalid.

        Two steps, each a compare-and-set: create ``v.<N>`` (N one past every stored
        version), then move ``current`` from the revision read before.  A stored
        version is never rewritten, so every controller's cache stays true.  A writer
        that loses the second step deletes its ``v.<N>`` and tries again; one that died
        between the steps leaves a version that was never current, and later writers
        number past it.
        """
        config = parse_config(yaml_text)
        for _ in range(20):
            current, revision = await self._current_key()
            version = max(current, *await self._stored_versions(), 0) + 1
            applied_at = time.time()
            record = {"yaml": yaml_text, "applied_at": applied_at, "source": source}
            try:
                await self.kv.create(f"v.{version}", msgspec.msgpack.encode(record))
            except Exception:  # another writer took this number: retry with the next one
                await asyncio.sleep(0.005)
                continue
            try:
                await self.kv.update(CURRENT, str(version).encode(), last=revision or None)
            except KeyWrongLastSequenceError:  # another version became current meanwhile
                with contextlib.suppress(Exception):
                    await self.kv.delete(f"v.{version}")  # never current: not a version
                await asyncio.sleep(0.005)
                continue
            stored = StoredConfig(version, yaml_text, config, applied_at, source)
            self._cache[version] = stored
            self.current_version = version
            log.info("config.applied", version=version, name=config.name, source=source)
            return stored
        raise ContendedError("could not apply the config: too many concurrent writers")

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
        stored = _decode_record(wanted, entry.value or b"")
        self._cache[wanted] = stored
        return stored

    async def _current_key(self) -> tuple[int, int]:
        """The version ``current`` names (0 if none, or garbage: rejected and counted) and
        the key's revision, a delete marker's included (0 if it was never written)."""
        try:
            entry = await self.kv.get(CURRENT)
        except KeyNotFoundError as exc:  # never written, or deleted / purged
            marker = getattr(exc, "entry", None)
            return 0, int(getattr(marker, "revision", 0) or 0)
        try:
            return _parse_version(entry.value), entry.revision or 0
        except ValueError as exc:
            self._reject_current(str(exc))
        return 0, entry.revision or 0

    async def _read_current(self) -> int:
        """The version in force according to the bucket itself (when unset or garbage, the
        one this store knows: 0 before any)."""
        version, _ = await self._current_key()
        return version or self.current_version

    async def history(self) -> list[dict[str, object]]:
        """Every stored version, oldest first: version, name, applied_at, source, current.

        A corrupt version is listed with an ``error`` (and is logged and counted)
        rather than hiding the others.
        """
        rows: list[dict[str, object]] = []
        for version in await self._stored_versions():
            row: dict[str, object] = {
                "version": version,
                "current": version == self.current_version,
            }
            try:
                stored = await self.get(version)
            except (CorruptConfigError, KeyError) as exc:
                self.bus.counters["config.history_unreadable"] += 1
                log.error("config.history_unreadable", version=version, error=str(exc))
                row.update(name="(unreadable)", applied_at=0.0, source="", error=str(exc))
            else:
                row.update(
                    name=stored.config.name, applied_at=stored.applied_at, source=stored.source
                )
            rows.append(row)
        return rows

    async def _stored_versions(self) -> list[int]:
        """The numbers of every ``v.<N>`` key, ascending (a stray key is skipped).

        nats-py lists keys through a watcher that can end its listing before the entries
        arrive (seen on a loaded machine: no keys, with version 1 stored and current), so an
        empty listing while a version is current is made again, up to :data:`LIST_ATTEMPTS`.
        """
        versions: list[int] = []
        for attempt in range(LIST_ATTEMPTS):
            try:
                keys = await self.kv.keys()
            except Exception:  # nats-py raises NoKeysError on an empty bucket
                keys = []
            versions = sorted(int(k[2:]) for k in keys if k.startswith("v.") and k[2:].isdigit())
            if versions or not self.current_version:
                return versions
            self.bus.counters["config.versions_relisted"] += 1
            log.warning("config.versions_relisted", attempt=attempt + 1)
        return versions


def _decode_record(version: int, data: bytes) -> StoredConfig:
    """A stored ``v.<N>`` record; :class:`CorruptConfigError` if any part of it is unreadable."""
    try:
        record = msgspec.msgpack.decode(data)
        yaml_text = record["yaml"]
        if not isinstance(yaml_text, str):
            raise TypeError(f"'yaml' is a {type(yaml_text).__name__}, not a string")
        return StoredConfig(
            version,
            yaml_text,
            parse_config(yaml_text),
            float(record["applied_at"]),
            str(record.get("source", "")),
        )
    except ConfigError as exc:
        raise CorruptConfigError(version, f"its YAML no longer validates: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:  # msgspec.DecodeError is a ValueError
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CorruptConfigError(version, reason) from None
