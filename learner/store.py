"""Published policy versions on NATS: blobs in a JetStream object store, records in KV.

Layout (torch-free: this module moves bytes and JSON, so the CLI and the
controller can read it without loading a model):

- object store ``hieramas_policy_blobs``: ``v.<N>`` holds version N's checkpoint
  (:func:`hieramas.learner.checkpoint.encode_checkpoint` bytes, policy only);
- KV bucket ``hieramas_policies``: ``meta.<N>`` holds its :class:`PolicyRecord`
  (JSON), and ``current`` the number of the version in force.

Stage 2's classifier versions (:data:`CLASSIFIER_PREFIX`) are a second numbered series in
the same buckets: ``dag.meta.<N>``, ``dag.v.<N>``, ``dag.current``.

Versions are never rewritten: publishing first claims ``meta.<N>`` with a
compare-and-set create, N one past every stored version (a writer that loses the
race takes the next number), then writes the blob, then moves ``current``.  A
writer that dies between the steps leaves a record whose blob is missing or
was never current; readers report it, later writers number past it.
:meth:`PolicyStore.rollback` makes an older version current again; the learner
notices and continues training from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE, ObjectStore

from hieramas.bus import Bus
from hieramas.jsretry import open_key_value, open_object_store

__all__ = [
    "CLASSIFIER_PREFIX",
    "POLICY_BLOBS",
    "POLICY_BUCKET",
    "PolicyRecord",
    "PolicyStore",
    "PolicyStoreError",
]

log = structlog.get_logger(__name__)

POLICY_BUCKET = "hieramas_policies"
POLICY_BLOBS = "hieramas_policy_blobs"
CURRENT = "current"
CLASSIFIER_PREFIX = "dag."
_CHUNK_HEADROOM = 4096
"""Bytes of a chunk message's limit left for its subject and headers."""
"""The key prefix of Stage-2 classifier versions (``PolicyStore(bus, prefix=...)``)."""


class PolicyStoreError(RuntimeError):
    """A version that cannot be had: ``not_found``, ``corrupt`` (record or blob), ``missing``
    (a record whose blob was never written)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """One published version: its number, its blob's size and digest, and what it is.

    ``meta`` is the checkpoint's own metadata without its layout (lineage, parent,
    config name and version, seed, metrics, embedder, temperature, trainer step, ...).
    """

    version: int
    size: int
    sha256: str
    published_unix: float
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def parent(self) -> int | None:
        """The version it was trained from (``None`` for the root of a lineage)."""
        parent = self.meta.get("parent")
        return None if parent is None else int(parent)

    @property
    def lineage(self) -> str:
        """The lineage (one policy trained on one slot layout) it belongs to."""
        return str(self.meta.get("lineage", ""))

    @property
    def metrics(self) -> dict[str, float]:
        """The training metrics it was published with."""
        return {str(k): float(v) for k, v in dict(self.meta.get("metrics") or {}).items()}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready map (what ``meta.<N>`` holds)."""
        return {
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "published_unix": self.published_unix,
            "source": self.source,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyRecord:
        """Inverse of :meth:`to_json`; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
        return cls(
            version=int(data["version"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            published_unix=float(data["published_unix"]),
            source=str(data.get("source", "")),
            meta=dict(data.get("meta") or {}),
        )


Encoder = Callable[[int], tuple[bytes, Mapping[str, Any]]]
"""``encode(version) -> (blob, meta)``: a checkpoint numbered ``version`` and its metadata."""


class PolicyStore:
    """Policy versions on one NATS (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        *,
        bucket: str = POLICY_BUCKET,
        blobs: str = POLICY_BLOBS,
        prefix: str = "",
    ) -> None:
        self.bus = bus
        self.bucket = bucket
        self.blobs = blobs
        self.prefix = prefix
        """Prepended to every key and blob name: another kind of version (Stage 2's
        classifier, :data:`CLASSIFIER_PREFIX`) shares the buckets, and their permissions,
        as a numbered series of its own with its own ``current``."""
        self._current = f"{prefix}{CURRENT}"
        self._kv: KeyValue | None = None
        self._obj: ObjectStore | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.last_revision = 0
        """The KV revision of the last ``current`` this store wrote (its watch echoes it)."""

    async def open(self) -> PolicyStore:
        """Bind (or create) the bucket and the object store; safe from several processes.

        Transient JetStream faults (a fresh R3 bucket electing its leader) are retried for a
        bounded time (:mod:`hieramas.jsretry`); a refused login fails at once."""
        self._kv = await open_key_value(self.bus, self.bucket, description="HieraMAS policies")
        self._obj = await open_object_store(
            self.bus, self.blobs, description="HieraMAS policy checkpoints"
        )
        return self

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("PolicyStore.open() was not awaited")
        return self._kv

    @property
    def obj(self) -> ObjectStore:
        if self._obj is None:
            raise RuntimeError("PolicyStore.open() was not awaited")
        return self._obj

    # -- writing ---------------------------------------------------------------------

    async def publish(
        self, encode: Encoder, *, source: str = "learner", make_current: bool = True
    ) -> PolicyRecord:
        """Store a new version (numbered past every stored one) and make it current."""
        for _ in range(50):
            stored, current = await asyncio.gather(self.versions(), self.current_version())
            version = max(max(stored or [0]) + 1, current + 1)
            blob, meta = encode(version)
            record = PolicyRecord(
                version=version,
                size=len(blob),
                sha256=hashlib.sha256(blob).hexdigest(),
                published_unix=time.time(),
                source=source,
                meta=dict(meta),
            )
            try:
                await self.kv.create(
                    f"{self.prefix}meta.{version}", json.dumps(record.to_json()).encode()
                )
            except Exception:  # another writer took this number: try the next
                await asyncio.sleep(0.005)
                continue
            await self.obj.put(f"{self.prefix}v.{version}", blob, meta=self._one_chunk(blob))
            if make_current:
                self.last_revision = await self.kv.put(self._current, str(version).encode())
            log.info(
                "policy.published",
                version=version,
                parent=record.parent,
                lineage=record.lineage,
                size=record.size,
            )
            return record
        raise RuntimeError("could not publish the policy: too many concurrent writers")

    def _one_chunk(self, blob: bytes) -> ObjectMeta | None:
        """Chunking that sends ``blob`` as one message when the server takes it: each chunk
        is a JetStream publish awaited for its ack, and a MiniLM policy (0.4 MB) in the
        default 128 KiB chunks took four of them (readers take any chunk size)."""
        limit = self.bus.max_payload - _CHUNK_HEADROOM
        if len(blob) <= OBJ_DEFAULT_CHUNK_SIZE or len(blob) > limit:
            return None
        return ObjectMeta(options=ObjectMetaOptions(max_chunk_size=len(blob)))

    async def make_current(self, version: int) -> None:
        """Point ``current`` at ``version`` (already stored), as this writer's own move."""
        self.last_revision = await self.kv.put(self._current, str(version).encode())

    async def rollback(self, version: int) -> PolicyRecord:
        """Make stored ``version`` current again; :class:`PolicyStoreError` if it is unusable."""
        record = await self.record(version)
        await self.blob(version)  # proves the blob is there and whole before it goes live
        self.last_revision = await self.kv.put(self._current, str(version).encode())
        log.info("policy.rollback", version=version)
        return record

    # -- reading ---------------------------------------------------------------------

    async def current_version(self) -> int:
        """The version in force (0 before any, or when ``current`` is garbage)."""
        try:
            entry = await self.kv.get(self._current)
        except KeyNotFoundError:
            return 0
        return _parse_version(entry.value)

    async def versions(self) -> list[int]:
        """Every stored version number, ascending."""
        try:
            keys = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        head = f"{self.prefix}meta."
        cut = len(head)
        return sorted(int(k[cut:]) for k in keys if k.startswith(head) and k[cut:].isdigit())

    async def record(self, version: int) -> PolicyRecord:
        """The record of ``version``; :class:`PolicyStoreError` ``not_found`` or ``corrupt``."""
        try:
            entry = await self.kv.get(f"{self.prefix}meta.{version}")
        except KeyNotFoundError:
            raise PolicyStoreError("not_found", f"no policy version {version}") from None
        try:
            return PolicyRecord.from_json(json.loads(entry.value or b""))
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyStoreError(
                "corrupt", f"policy version {version}: unreadable record: {exc}"
            ) from None

    async def records(self) -> list[PolicyRecord | PolicyStoreError]:
        """Every version's record, oldest first (an unreadable one as its error)."""
        out: list[PolicyRecord | PolicyStoreError] = []
        for version in await self.versions():
            try:
                out.append(await self.record(version))
            except PolicyStoreError as exc:
                out.append(exc)
        return out

    async def blob(self, version: int) -> bytes:
        """The checkpoint bytes of ``version``, checked against its record's digest."""
        record = await self.record(version)
        try:
            result = await self.obj.get(f"{self.prefix}v.{version}")
        except Exception as exc:  # ObjectNotFoundError, a digest mismatch, ...
            raise PolicyStoreError(
                "missing", f"policy version {version}: no checkpoint: {type(exc).__name__} {exc}"
            ) from None
        data = bytes(result.data or b"")
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise PolicyStoreError("corrupt", f"policy version {version}: digest mismatch")
        return data

    # -- following ---------------------------------------------------------------------

    async def watch(self, listener: Callable[[int, int], Awaitable[None]]) -> None:
        """Call ``listener(version, revision)`` (on the loop) for the current version and each
        new one; ``revision`` is the KV revision of that ``current`` value.

        A bad ``current`` value is logged and counted; a failing listener does not end
        the watch.
        """
        watcher = await self.kv.watch(self._current, include_history=False)

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                version = _parse_version(entry.value)
                if not version:
                    self.bus.counters["policy.bad_current"] += 1
                    log.error("policy.bad_current", value=entry.value[:40])
                    continue
                try:
                    await listener(version, int(entry.revision or 0))
                except Exception:
                    self.bus.counters["policy.listener_failed"] += 1
                    log.exception("policy.listener_failed", version=version)

        self._watch_task = asyncio.get_running_loop().create_task(follow())

    async def close(self) -> None:
        """Stop watching."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
            self._watch_task = None


def _parse_version(raw: bytes | None) -> int:
    text = (raw or b"").decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 0
