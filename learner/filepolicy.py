"""A policy provider that plans with one checkpoint file: a trained version outside its run.

A training run keeps every evaluated version as ``<run-dir>/checkpoints/v<N>.ckpt`` and
the best as ``<run-dir>/best.ckpt`` (:mod:`.driver`).  A config that names the file plans
every query with that version, on any runtime, with no policy store::

    planner: {kind: learned, provider: "hieramas.learner.filepolicy:provider", path: run/best.ckpt}

so ``hieramas bench --config`` can evaluate a learned policy on a test split beside the
baselines (``hieramas train --local`` writes such a config as ``<run-dir>/eval.yaml``).
Options: ``path`` (required), ``mode`` (``greedy`` or ``rotation``; default greedy), ``seed``.
A file that is missing or not a checkpoint fails the provider's start, so the config's
queries fail as ``bad_planner`` instead of being planned with something else (the provider
is :mod:`.fixedpolicy`'s, with the file as its source).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hieramas.learner.fixedpolicy import CheckpointFile, FixedPolicyProvider, fixed_provider
from hieramas.learner.policy import DecodeMode

__all__ = ["PROVIDER", "file_planner", "provider"]

PROVIDER = "hieramas.learner.filepolicy:provider"
"""The import path a config names to plan with a checkpoint file."""


def provider(options: Mapping[str, Any]) -> FixedPolicyProvider:
    """The planner registry's factory (``provider: "hieramas.learner.filepolicy:provider"``)."""
    return fixed_provider(options, "path", lambda p: CheckpointFile(Path(str(p)).expanduser()))


def file_planner(path: Path, mode: DecodeMode = "greedy") -> dict[str, Any]:
    """The ``planner`` block of a config that plans with the checkpoint at ``path``."""
    return {"kind": "learned", "provider": PROVIDER, "path": str(path), "mode": mode}
