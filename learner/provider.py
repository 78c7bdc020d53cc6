"""The controller's policy provider over NATS: the newest published version, loaded live.

:class:`NatsPolicyProvider` implements the controller's ``PolicyProvider``
(:mod:`hieramas.controller.learned`).  It watches the policy store's
``current`` key (:mod:`.store`); when a version is published (or rolled back
to), it fetches the checkpoint, rebuilds the policy off the NATS loop and swaps
it in with one reference assignment, so the next query is planned with it and
a query already planned keeps its plan.  Configs name it as the default
provider of ``planner: {kind: learned}``; its options:

- ``mode``: ``greedy`` (default) or ``rotation`` for non-exploring queries;
- ``seed``: the sampling RNG's seed (default: fresh entropy); each version's RNG is
  seeded with ``(seed, version)``, so a new version does not replay the old one's draws;
- ``embedder``: an embedder name to load at start (e.g. ``all-MiniLM-L6-v2``), so
  the first version does not wait for the model.

Importing this module imports torch: the controller imports it only when a
learned planner is configured.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hieramas.controller.config import HieraConfig
from hieramas.controller.learned import PolicyMismatch
from hieramas.controller.planner import Assignment, PlanRequest
from hieramas.learner.checkpoint import Checkpoint, decode_checkpoint, layout_key
from hieramas.learner.embedder_names import embedder_for
from hieramas.learner.follower import SeriesFollower
from hieramas.learner.planning import PolicyPlanner
from hieramas.learner.policy import DecodeMode
from hieramas.learner.slots import SlotLayout
from hieramas.learner.store import PolicyStore
from hieramas.learner.threads import set_torch_threads

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = ["LoadedPolicy", "NatsPolicyProvider", "layout_key", "provider"]


class LoadedPolicy:
    """One published version, ready to plan (the controller's ``Policy``); thread-safe."""

    def __init__(self, checkpoint: Checkpoint, *, mode: DecodeMode = "greedy", seed: int | None):
        meta = checkpoint.meta
        self.meta = meta
        self.layout = checkpoint.layout()
        self._key = layout_key(self.layout)
        policy = checkpoint.policy()
        self.planner = PolicyPlanner(
            policy,
            embedder_for(meta.embedder),
            mode=mode,
            temperature=meta.temperature,
            version=meta.version,
            # one stream per version: seeded alike, every version would sample the same draws
            seed=None if seed is None else (seed, meta.version),
        )
        self._fits: dict[int, tuple[HieraConfig, bool]] = {}  # id -> (config kept alive, fits)
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        return self.meta.version

    def fits(self, config: HieraConfig) -> bool:
        """Whether ``config`` has this policy's slot layout (remembered per config object)."""
        with self._lock:
            known = self._fits.get(id(config))
        if known is not None and known[0] is config:
            return known[1]
        mine = SlotLayout.from_config(config, options=self.layout.options)
        fits = layout_key(mine) == self._key
        with self._lock:
            if len(self._fits) > 256:  # configs are few; a bound keeps a long run's map small
                self._fits.clear()
            self._fits[id(config)] = (config, fits)
        return fits

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        if not self.fits(config):
            raise PolicyMismatch(
                f"policy v{self.version} was trained for another slot layout than config "
                f"{config.name!r}"
            )
        return self.planner.assign(config, request)


class NatsPolicyProvider(SeriesFollower[LoadedPolicy]):
    """Follows the policy store's ``current`` version (see the module docstring).

    ``loaded`` maps each version loaded to the monotonic time it became current here,
    and ``on_load`` listeners are called as each one does (:class:`.follower.SeriesFollower`).
    """

    name = "policy"

    def __init__(
        self,
        *,
        mode: DecodeMode = "greedy",
        seed: int | None = None,
        embedder: str | None = None,
        store_factory: Callable[[Bus], PolicyStore] = PolicyStore,
    ) -> None:
        if mode not in ("greedy", "rotation"):
            raise ValueError(f"mode must be 'greedy' or 'rotation', not {mode!r}")
        super().__init__(store_factory=store_factory)
        self.mode: DecodeMode = mode
        self.seed = seed
        self.preload = embedder

    async def start(self, bus: Bus) -> None:
        """Load the preloaded embedder, then follow the store (:meth:`SeriesFollower.start`)."""
        if self.preload:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, embedder_for, self.preload)
        await super().start(bus)

    def build(self, blob: bytes) -> LoadedPolicy:
        return LoadedPolicy(decode_checkpoint(blob), mode=self.mode, seed=self.seed)

    def describe(self, loaded: LoadedPolicy) -> dict[str, Any]:
        return {"parent": loaded.meta.parent}


def provider(options: Mapping[str, Any]) -> NatsPolicyProvider:
    """The planner registry's factory (``provider: "hieramas.learner.provider:provider"``)."""
    set_torch_threads(1)  # a tiny forward pass: more threads only wait for a busy core
    opts = dict(options)
    unknown = set(opts) - {"mode", "seed", "embedder"}
    if unknown:
        raise ValueError(f"unknown policy provider option(s): {', '.join(sorted(unknown))}")
    seed = opts.get("seed")
    embedder = opts.get("embedder")
    return NatsPolicyProvider(
        mode=str(opts.get("mode", "greedy")),  # type: ignore[arg-type]  # checked in __init__
        seed=None if seed is None else int(seed),
        embedder=None if embedder is None else str(embedder),
    )
