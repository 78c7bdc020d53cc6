"""The planner registry: the one place where a planner kind is added.

A config names its planner (``planner: {kind: learned, ...}``), and a
controller started with ``--planner`` uses that for configs that name none;
either way the planner is built here from its :class:`PlannerConfig`.  To add a
planner, write a factory ``(PlannerConfig) -> Planner`` and add it to
:data:`PLANNERS` (or call :func:`register_planner` from a plug-in).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hieramas.controller.config import PlannerConfig
from hieramas.controller.learned import DEFAULT_PROVIDER, LearnedPlanner, load_provider
from hieramas.controller.planner import Planner, StaticPlanner
from hieramas.controller.randomplan import RandomPlanner

__all__ = [
    "PLANNERS",
    "PlannerError",
    "PlannerFactory",
    "make_planner",
    "planner_kinds",
    "register_planner",
]

PlannerFactory = Callable[[PlannerConfig], Planner]


class PlannerError(ValueError):
    """A planner that cannot be built: an unknown kind, or its factory failed."""


def _static(spec: PlannerConfig) -> Planner:
    return StaticPlanner()


def _learned(spec: PlannerConfig) -> Planner:
    options = spec.options
    provider = load_provider(str(options.pop("provider", DEFAULT_PROVIDER)), options)
    return LearnedPlanner(provider)


def _random(spec: PlannerConfig) -> Planner:
    options = spec.options
    unknown = set(options) - {"seed"}
    if unknown:
        raise ValueError(f"unknown random planner option(s): {', '.join(sorted(unknown))}")
    return RandomPlanner(seed=int(options.get("seed", 0)))


def _stage2(spec: PlannerConfig) -> Planner:
    # imported here: the Stage-2 planner loads torch, which a controller without it never needs
    module = importlib.import_module("hieramas.learner.topologyplanner")
    planner: Planner = module.planner(spec.options)
    return planner


PLANNERS: dict[str, PlannerFactory] = {
    "static": _static,
    "learned": _learned,
    "random": _random,
    "stage2": _stage2,
}
"""Planner kind -> factory."""


def register_planner(kind: str, factory: PlannerFactory) -> None:
    """Add (or replace) planner ``kind``."""
    PLANNERS[kind] = factory


def planner_kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(PLANNERS)


def make_planner(spec: PlannerConfig) -> Planner:
    """Build the planner ``spec`` names; :class:`PlannerError` if it is unknown or fails.

    ``spec.heavy``, when set, overrides where the planner runs (off the loop or on it).
    """
    factory = PLANNERS.get(spec.kind)
    if factory is None:
        raise PlannerError(f"unknown planner {spec.kind!r} (known: {', '.join(planner_kinds())})")
    try:
        planner = factory(spec)
    except Exception as exc:
        raise PlannerError(f"planner {spec.kind!r} cannot be built: {exc}") from exc
    if spec.heavy is not None:
        planner.heavy = spec.heavy
    return planner
