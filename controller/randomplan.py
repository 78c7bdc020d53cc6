"""The random planner: every proposer and synthesizer slot on an LLM drawn uniformly, per query.

The "random slot assignment" baseline of the Stage-1 learner: the config's DAG and
decision LLM, with each slot's LLM drawn independently and uniformly from the
config's pool (never ``skip``, ``vote`` or ``pass``).  The draw is a hash of
``(seed, item or query id, slot)``, so the same item gets the same assignment in
every run with the same seed, and two methods compared on the same items see the
same random plans.  Hashing costs microseconds: the planner runs on the loop.
"""

from __future__ import annotations

import hashlib

from hieramas.controller.config import HieraConfig
from hieramas.controller.planner import Assignment, PlanRequest

__all__ = ["RandomPlanner"]


class RandomPlanner:
    """Uniform random LLM per slot, deterministic per ``(seed, item)`` (see the module docstring)."""

    kind = "random"
    heavy = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _pick(self, pool: list[str], key: str, slot: str) -> str:
        digest = hashlib.blake2b(f"{self.seed}\0{key}\0{slot}".encode(), digest_size=8).digest()
        return pool[int.from_bytes(digest, "big") % len(pool)]

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        pool = list(config.llms)
        key = request.item_id or request.query_id
        return Assignment(
            proposers={
                name: [self._pick(pool, key, f"{name}/p{i}") for i in range(len(spec.proposers))]
                for name, spec in config.supernodes.items()
            },
            synthesizers={
                name: self._pick(pool, key, f"{name}/synth") for name in config.supernodes
            },
            edges=list(config.edges),
        )

    async def start(self, bus: object) -> None:
        pass

    async def stop(self) -> None:
        pass
