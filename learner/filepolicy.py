"""A policy provider that plans with one checkpoint file: a trained version outside its run.

A training run keeps every evaluated version as ``<run-dir>/checkpoints/v<N>.ckpt`` and
the best as ``<run-dir>/best.ckpt`` (:mod:`.driver`).  A config that names the file plans
every query with that version, on any runtime, with no policy store::

    planner: {kind: learned, provider: "hieramas.learner.filepolicy:provider", path: run/best.ckpt}

so ``hieramas bench --config`` can evaluate a learned policy on a test split beside the
baselines (``hieramas train --local`` writes such a config as ``<run-dir>/eval.yaml``).
Options: ``path`` (required), ``mode`` (``greedy`` or ``rotation``; default greedy), ``seed``.
A file that is missing or not a checkpoint fails the provider's start, so the config's
queries fail as ``bad_planner`` instead of being planned with something else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hieramas.learner.checkpoint import decode_checkpoint
from hieramas.learner.policy import DecodeMode
from hieramas.learner.provider import LoadedPolicy
from hieramas.learner.threads import set_torch_threads

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = ["PROVIDER", "FilePolicyProvider", "file_planner", "provider"]

PROVIDER = "hieramas.learner.filepolicy:provider"
"""The import path a config names to plan with a checkpoint file."""


class FilePolicyProvider:
    """Plans with the checkpoint at ``path`` only (the controller's ``PolicyProvider``)."""

    def __init__(self, path: Path, *, mode: DecodeMode = "greedy", seed: int | None = None):
        if mode not in ("greedy", "rotation"):
            raise ValueError(f"mode must be 'greedy' or 'rotation', not {mode!r}")
        self.path = path
        self.mode: DecodeMode = mode
        self.seed = seed
        self._policy: LoadedPolicy | None = None

    def current(self) -> LoadedPolicy | None:
        return self._policy

    async def start(self, bus: Bus) -> None:
        """Read and build the checkpoint off the loop (``OSError``/``CheckpointError`` if
        unusable)."""
        loop = asyncio.get_running_loop()
        self._policy = await loop.run_in_executor(None, self.load)

    def load(self) -> LoadedPolicy:
        """The checkpoint file as a planning policy."""
        blob = self.path.read_bytes()
        return LoadedPolicy(decode_checkpoint(blob), mode=self.mode, seed=self.seed)

    async def stop(self) -> None:
        pass


def provider(options: Mapping[str, Any]) -> FilePolicyProvider:
    """The planner registry's factory (``provider: "hieramas.learner.filepolicy:provider"``)."""
    set_torch_threads(1)
    opts = dict(options)
    unknown = set(opts) - {"path", "mode", "seed"}
    if unknown:
        raise ValueError(f"unknown file policy option(s): {', '.join(sorted(unknown))}")
    if not opts.get("path"):
        raise ValueError("a file policy provider needs 'path' (a checkpoint file)")
    seed = opts.get("seed")
    return FilePolicyProvider(
        Path(str(opts["path"])).expanduser(),
        mode=str(opts.get("mode", "greedy")),  # type: ignore[arg-type]  # checked in __init__
        seed=None if seed is None else int(seed),
    )


def file_planner(path: Path, mode: DecodeMode = "greedy") -> dict[str, Any]:
    """The ``planner`` block of a config that plans with the checkpoint at ``path``."""
    return {"kind": "learned", "provider": PROVIDER, "path": str(path), "mode": mode}
