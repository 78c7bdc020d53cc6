"""The learned planner: plans each query with the newest policy version, updated live.

The controller holds no model.  A :class:`PolicyProvider` (implemented by the
learner package, which keeps torch out of the controller) loads policy
versions as they are published and hands out the newest one;
:class:`LearnedPlanner` asks it for the current :class:`Policy` once per query,
so a new version plans the next query and an in-flight query keeps the plan it
started with.  The gateway builds the planner when a config naming it becomes
current, and the provider's ``start`` returns once the current version is loaded,
so queries do not race the first load.  A training (exploring) query that still
finds no version loaded waits up to ``first_wait_s`` for one; after that, or for
other queries, it is planned statically (``policy_version`` ``None`` in its trace)
and counted.

A provider is named in the config by an import path, ``"module:factory"``,
where ``factory(options) -> PolicyProvider`` gets the planner's options::

    planner: {kind: learned, provider: "hieramas.learner.provider:provider", ...}

A policy trained for another slot layout (the config changed its supernodes or
LLMs) raises :class:`PolicyMismatch`; the query is then planned statically and
counted, never failed.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from hieramas import metrics
from hieramas.controller.config import HieraConfig
from hieramas.controller.planner import Assignment, Planner, PlanRequest, StaticPlanner

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = [
    "DEFAULT_PROVIDER",
    "InMemoryPolicyProvider",
    "LearnedPlanner",
    "Policy",
    "PolicyMismatch",
    "PolicyProvider",
    "WaitingProvider",
    "load_provider",
]

log = structlog.get_logger(__name__)

DEFAULT_PROVIDER = "hieramas.learner.provider:provider"
"""Where the learner package provides its :class:`PolicyProvider` factory."""


class PolicyMismatch(ValueError):
    """Raised by :meth:`Policy.assign` for a config the policy was not trained for."""


class Policy(Protocol):
    """One loaded, frozen policy version (a new version is a new object)."""

    @property
    def version(self) -> int:
        """The version number, recorded in the trace of every query it plans."""
        ...

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        """The assignment of one query: sampled when ``request.explore`` (set
        ``sampled=True``), else the policy's inference mode (greedy, top-n rotation).
        Called from a thread pool: it must be thread-safe.  :class:`PolicyMismatch` if
        ``config`` does not fit the policy."""
        ...


class PolicyProvider(Protocol):
    """Loads published policy versions and hands out the newest."""

    def current(self) -> Policy | None:
        """The newest loaded version (``None`` before the first); cheap, any thread."""
        ...

    async def start(self, bus: Bus) -> None:
        """Start loading versions (e.g. watch a JetStream KV bucket); on the NATS loop."""
        ...

    async def stop(self) -> None: ...


@runtime_checkable
class WaitingProvider(Protocol):
    """A provider that can wait for its first version (optional for a :class:`PolicyProvider`)."""

    def wait_current(self, timeout: float) -> Policy | None:
        """The current version, waiting up to ``timeout`` s for the first one to load
        (called from a planning thread, never on the loop)."""
        ...


class LearnedPlanner:
    """A :class:`Planner` that asks the provider's current policy; static until one loads."""

    kind = "learned"

    def __init__(
        self,
        provider: PolicyProvider,
        *,
        heavy: bool = True,
        fallback: Planner | None = None,
        first_wait_s: float = 5.0,
    ) -> None:
        self.provider = provider
        self.heavy = heavy
        self.fallback = fallback or StaticPlanner()
        self.first_wait_s = first_wait_s
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()  # counters are bumped from the planning threads
        metrics.track("planner", self)

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        provider = self.provider
        policy = provider.current()
        # heavy: this runs in a planning thread, where a training query may wait for a version
        if (
            policy is None
            and request.explore
            and self.heavy
            and isinstance(provider, WaitingProvider)
        ):
            policy = provider.wait_current(self.first_wait_s)
            self._count("waited_first" if policy is not None else "waited_in_vain")
        if policy is None:
            self._count("no_policy")
            return replace(self.fallback.assign(config, request), policy_version=None)
        try:
            assignment = policy.assign(config, request)
        except PolicyMismatch as exc:
            self._count("mismatch")
            if self.counters["mismatch"] in (1, 10, 100) or self.counters["mismatch"] % 1000 == 0:
                log.warning("planner.policy_mismatch", version=policy.version, reason=str(exc))
            return replace(self.fallback.assign(config, request), policy_version=None)
        self._count("sampled" if assignment.sampled else "greedy")
        return replace(assignment, policy_version=policy.version)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counters[what] += 1

    async def start(self, bus: Bus) -> None:
        await self.provider.start(bus)

    async def stop(self) -> None:
        await self.provider.stop()


class InMemoryPolicyProvider:
    """A provider whose versions are handed to it in-process with :meth:`publish`."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._policy = policy

    def publish(self, policy: Policy) -> None:
        """Make ``policy`` the current version (one reference swap: atomic)."""
        self._policy = policy

    def current(self) -> Policy | None:
        return self._policy

    async def start(self, bus: Bus) -> None:
        pass

    async def stop(self) -> None:
        pass


def load_provider(path: str, options: Mapping[str, Any]) -> PolicyProvider:
    """Import ``"module:factory"`` and call ``factory(options)``; ``ValueError`` if it fails."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"a policy provider is 'module:factory', not {path!r}")
    try:
        factory: Callable[[Mapping[str, Any]], PolicyProvider] = getattr(
            importlib.import_module(module_name), attr
        )
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"no policy provider {path!r}: {exc}") from exc
    return factory(options)
