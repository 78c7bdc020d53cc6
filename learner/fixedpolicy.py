"""A policy provider fixed to one checkpoint: read once at start from its source, never changed.

Two sources, two registry paths a config names (each module keeps its own):

- :class:`StoredVersion`: one published version in the policy store
  (:mod:`.pinned`, ``version: 7``), to evaluate that version whatever the learner publishes
  meanwhile;
- :class:`CheckpointFile`: a checkpoint file, e.g. a training run's ``best.ckpt``
  (:mod:`.filepolicy`, ``path: run/best.ckpt``), on any runtime, with no policy store.

A source that cannot be read, or bytes that are not a checkpoint (or are numbered other than
the version asked for), fail the provider's start, so the config's queries fail as
``bad_planner`` instead of being planned with something else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hieramas.learner.checkpoint import decode_checkpoint
from hieramas.learner.policy import DecodeMode
from hieramas.learner.provider import LoadedPolicy
from hieramas.learner.store import PolicyStore
from hieramas.learner.threads import set_torch_threads

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = [
    "CheckpointFile",
    "CheckpointSource",
    "FixedPolicyProvider",
    "StoredVersion",
    "fixed_provider",
]


class CheckpointSource(Protocol):
    """Where a fixed provider's checkpoint bytes come from."""

    @property
    def version(self) -> int | None:
        """The version the checkpoint must carry (``None``: whatever it carries)."""

    async def read(self, bus: Bus) -> bytes: ...


@dataclass(frozen=True)
class StoredVersion:
    """Published version ``version`` in the policy store (``PolicyStoreError`` if unusable)."""

    version: int

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError(f"a policy version is a positive number, not {self.version}")

    async def read(self, bus: Bus) -> bytes:
        store = await PolicyStore(bus).open()
        return await store.blob(self.version)


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file (``OSError`` if it cannot be read)."""

    path: Path
    version: int | None = None

    async def read(self, bus: Bus) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self.path.read_bytes)


class FixedPolicyProvider:
    """Plans with the checkpoint of ``source`` only (the controller's ``PolicyProvider``)."""

    def __init__(
        self, source: CheckpointSource, *, mode: DecodeMode = "greedy", seed: int | None = None
    ) -> None:
        if mode not in ("greedy", "rotation"):
            raise ValueError(f"mode must be 'greedy' or 'rotation', not {mode!r}")
        self.source = source
        self.mode: DecodeMode = mode
        self.seed = seed
        self._policy: LoadedPolicy | None = None

    def current(self) -> LoadedPolicy | None:
        return self._policy

    async def start(self, bus: Bus) -> None:
        """Read the checkpoint and build it off the loop (the source's errors, or
        ``CheckpointError``/``ValueError`` for bytes that are not the checkpoint asked for)."""
        blob = await self.source.read(bus)
        self._policy = await asyncio.get_running_loop().run_in_executor(None, self.build, blob)

    def build(self, blob: bytes) -> LoadedPolicy:
        """Checkpoint bytes as a planning policy."""
        loaded = LoadedPolicy(decode_checkpoint(blob), mode=self.mode, seed=self.seed)
        wanted = self.source.version
        if wanted is not None and loaded.version != wanted:
            raise ValueError(f"stored version {wanted} is numbered {loaded.version}")
        return loaded

    async def stop(self) -> None:
        pass


def fixed_provider(
    options: Mapping[str, Any], key: str, source: Callable[[Any], CheckpointSource]
) -> FixedPolicyProvider:
    """A registry factory's work: ``options`` must hold ``key`` (the source's argument, given to
    ``source``) and may hold ``mode`` and ``seed``; anything else is refused."""
    set_torch_threads(1)  # a tiny forward pass: more threads only wait for a busy core
    opts = dict(options)
    unknown = set(opts) - {key, "mode", "seed"}
    if unknown:
        raise ValueError(f"unknown policy provider option(s): {', '.join(sorted(unknown))}")
    if opts.get(key) in (None, ""):
        raise ValueError(f"this policy provider needs {key!r}")
    seed = opts.get("seed")
    return FixedPolicyProvider(
        source(opts[key]),
        mode=str(opts.get("mode", "greedy")),  # type: ignore[arg-type]  # checked in __init__
        seed=None if seed is None else int(seed),
    )
