"""A policy provider pinned to one published version: to evaluate that version, and only it.

The learner's own provider (:mod:`.provider`) follows the policy store's ``current``
key, so what it plans with changes as training publishes.  An evaluation must
know which version answered, whatever the learner does meanwhile; so an
evaluation config names this provider and the version::

    planner: {kind: learned, provider: "hieramas.learner.pinned:provider", version: 7}

The version's checkpoint is fetched from the policy store when the controller
starts the planner (before that config's first query is planned), and never
changes.  The controller builds one planner per distinct planner spec, so
configs pinned to different versions plan side by side.  Options: ``version``
(required), ``mode`` (``greedy`` or ``rotation``; default greedy), ``seed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hieramas.learner.checkpoint import decode_checkpoint
from hieramas.learner.policy import DecodeMode
from hieramas.learner.provider import LoadedPolicy
from hieramas.learner.store import PolicyStore
from hieramas.learner.threads import set_torch_threads

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = ["PROVIDER", "PinnedPolicyProvider", "pinned_planner", "provider"]

PROVIDER = "hieramas.learner.pinned:provider"
"""The import path a config names to pin its learned planner to one version."""


class PinnedPolicyProvider:
    """Plans with stored policy version ``version`` only (the controller's ``PolicyProvider``)."""

    def __init__(self, version: int, *, mode: DecodeMode = "greedy", seed: int | None = None):
        if version < 1:
            raise ValueError(f"a policy version is a positive number, not {version}")
        if mode not in ("greedy", "rotation"):
            raise ValueError(f"mode must be 'greedy' or 'rotation', not {mode!r}")
        self.version = version
        self.mode: DecodeMode = mode
        self.seed = seed
        self._policy: LoadedPolicy | None = None

    def current(self) -> LoadedPolicy | None:
        return self._policy

    async def start(self, bus: Bus) -> None:
        """Fetch and build the version (``PolicyStoreError``/``CheckpointError`` if unusable:
        the controller then fails the config's queries as ``bad_planner``, never silently
        plans them with something else)."""
        store = await PolicyStore(bus).open()
        blob = await store.blob(self.version)
        loop = asyncio.get_running_loop()
        self._policy = await loop.run_in_executor(None, self._build, blob)

    def _build(self, blob: bytes) -> LoadedPolicy:
        loaded = LoadedPolicy(decode_checkpoint(blob), mode=self.mode, seed=self.seed)
        if loaded.version != self.version:
            raise ValueError(f"stored version {self.version} is numbered {loaded.version}")
        return loaded

    async def stop(self) -> None:
        pass


def provider(options: Mapping[str, Any]) -> PinnedPolicyProvider:
    """The planner registry's factory (``provider: "hieramas.learner.pinned:provider"``)."""
    set_torch_threads(1)
    opts = dict(options)
    unknown = set(opts) - {"version", "mode", "seed"}
    if unknown:
        raise ValueError(f"unknown pinned provider option(s): {', '.join(sorted(unknown))}")
    if "version" not in opts:
        raise ValueError("a pinned policy provider needs 'version'")
    seed = opts.get("seed")
    return PinnedPolicyProvider(
        int(opts["version"]),
        mode=str(opts.get("mode", "greedy")),  # type: ignore[arg-type]  # checked in __init__
        seed=None if seed is None else int(seed),
    )


def pinned_planner(version: int, mode: DecodeMode = "greedy") -> dict[str, Any]:
    """The ``planner`` block of a config pinned to ``version``."""
    return {"kind": "learned", "provider": PROVIDER, "version": version, "mode": mode}
