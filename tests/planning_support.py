"""A policy provider that tests name in configs (``planning_support:shared_provider``) and
publish fake policy versions to, in process."""

from __future__ import annotations

from typing import Any

from hieramas.bus import Bus
from hieramas.controller.config import HieraConfig
from hieramas.controller.learned import InMemoryPolicyProvider
from hieramas.controller.planner import Assignment, PlanRequest

PROVIDER = "planning_support:shared_provider"
SHARED = InMemoryPolicyProvider()
OPTIONS: dict[str, Any] = {}


def shared_provider(options: dict[str, Any]) -> InMemoryPolicyProvider:
    """The provider factory: every planner built in this process shares :data:`SHARED`."""
    OPTIONS.clear()
    OPTIONS.update(options)
    return SHARED


class FakePolicy:
    """A policy version that puts ``llm`` in every slot and records how it was asked."""

    def __init__(self, version: int, llm: str, bus: Bus | None = None) -> None:
        self._version = version
        self.llm = llm
        self.bus = bus
        self.asked: list[tuple[PlanRequest, bool]] = []  # (request, called on the NATS loop)

    @property
    def version(self) -> int:
        return self._version

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        self.asked.append((request, self.bus is not None and self.bus.in_loop()))
        return Assignment(
            proposers={n: [self.llm] * len(s.proposers) for n, s in config.supernodes.items()},
            synthesizers={n: self.llm for n in config.supernodes},
            edges=list(config.edges),
            sampled=request.explore,
        )
