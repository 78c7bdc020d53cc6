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
(required), ``mode`` (``greedy`` or ``rotation``; default greedy), ``seed``.  The provider
is :mod:`.fixedpolicy`'s, with the stored version as its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hieramas.learner.fixedpolicy import FixedPolicyProvider, StoredVersion, fixed_provider
from hieramas.learner.policy import DecodeMode

__all__ = ["PROVIDER", "pinned_planner", "provider"]

PROVIDER = "hieramas.learner.pinned:provider"
"""The import path a config names to pin its learned planner to one version."""


def provider(options: Mapping[str, Any]) -> FixedPolicyProvider:
    """The planner registry's factory (``provider: "hieramas.learner.pinned:provider"``)."""
    return fixed_provider(options, "version", lambda v: StoredVersion(int(v)))


def pinned_planner(version: int, mode: DecodeMode = "greedy") -> dict[str, Any]:
    """The ``planner`` block of a config pinned to ``version``."""
    return {"kind": "learned", "provider": PROVIDER, "version": version, "mode": mode}
