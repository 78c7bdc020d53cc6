"""A policy provider that tests name in configs (``planning_support:shared_provider``) and
publish fake policy versions to, in process."""

from __future__ import annotations

from typing import Any

from hieramas.bus import Bus
from hieramas.controller.config import HieraConfig
from hieramas.controller.learned import InMemoryPolicyProvider, PolicyMismatch
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
    """A policy version that puts ``llm`` in every slot and records how it was asked; a
    sampled plan records temperature 1.5 and a log-probability of -0.5 per slot.  With
    ``fits=False`` it declines every config (:class:`PolicyMismatch`)."""

    def __init__(
        self, version: int, llm: str, bus: Bus | None = None, *, fits: bool = True
    ) -> None:
        self._version = version
        self.llm = llm
        self.bus = bus
        self.fits = fits
        self.asked: list[tuple[PlanRequest, bool]] = []  # (request, called on the NATS loop)

    @property
    def version(self) -> int:
        return self._version

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        self.asked.append((request, self.bus is not None and self.bus.in_loop()))
        if not self.fits:
            raise PolicyMismatch(f"v{self._version} was trained for another layout")
        slots = sum(len(s.proposers) + 1 for s in config.supernodes.values())
        return Assignment(
            proposers={n: [self.llm] * len(s.proposers) for n, s in config.supernodes.items()},
            synthesizers={n: self.llm for n in config.supernodes},
            edges=list(config.edges),
            sampled=request.explore,
            temperature=1.5 if request.explore else None,
            log_probs=(-0.5,) * slots if request.explore else None,
        )
