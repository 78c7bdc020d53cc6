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
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from hieramas.controller.config import HieraConfig
from hieramas.controller.learned import PolicyMismatch
from hieramas.controller.planner import Assignment, PlanRequest
from hieramas.learner.checkpoint import Checkpoint, CheckpointError, decode_checkpoint
from hieramas.learner.embedder_names import embedder_for
from hieramas.learner.planning import PolicyPlanner
from hieramas.learner.policy import DecodeMode
from hieramas.learner.slots import SlotLayout
from hieramas.learner.store import PolicyStore, PolicyStoreError
from hieramas.learner.threads import set_torch_threads

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = ["LoadedPolicy", "NatsPolicyProvider", "layout_key", "provider"]

log = structlog.get_logger(__name__)


def layout_key(layout: SlotLayout) -> dict[str, Any]:
    """What must be equal for a policy to plan a config: slots, actions, answerless roles,
    options (and the decision LLM when it is a slot)."""
    key = layout.to_json()
    if not layout.options.decision_slot:
        key.pop("default_decision")
    return key


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


class NatsPolicyProvider:
    """Follows the policy store's ``current`` version (see the module docstring).

    ``loaded`` maps each version loaded to the monotonic time it became current here,
    and ``on_load`` listeners are called (from a planner thread) as each one does.
    """

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
        self.mode: DecodeMode = mode
        self.seed = seed
        self.preload = embedder
        self.counters: Counter[str] = Counter()
        self.loaded: dict[int, float] = {}
        self.on_load: list[Callable[[LoadedPolicy], None]] = []
        self._store_factory = store_factory
        self._store: PolicyStore | None = None
        self._policy: LoadedPolicy | None = None
        self._wanted = 0  # the newest version 'current' named: an older load must not win
        self._load_lock = asyncio.Lock()
        self._ready = threading.Event()  # set once a version is loaded

    def current(self) -> LoadedPolicy | None:
        return self._policy

    def wait_current(self, timeout: float) -> LoadedPolicy | None:
        """The current version, waiting up to ``timeout`` s for the first (a planning thread)."""
        self._ready.wait(timeout)
        return self._policy

    async def start(self, bus: Bus) -> None:
        """Watch the store; if a version is current already, return once it is loaded."""
        loop = asyncio.get_running_loop()
        if self.preload:
            await loop.run_in_executor(None, embedder_for, self.preload)
        self._store = await self._store_factory(bus).open()
        await self._store.watch(self._follow)
        current = await self._store.current_version()
        if current:
            await self._follow(current)

    async def stop(self) -> None:
        if self._store is not None:
            await self._store.close()

    async def _follow(self, version: int, revision: int = 0) -> None:
        """Load ``version`` (off the loop) and make it current, unless a newer one came."""
        self._wanted = version
        async with self._load_lock:  # one load at a time, newest wins
            if self._wanted != version or (self._policy and self._policy.version == version):
                return
            assert self._store is not None
            try:
                blob = await self._store.blob(version)
                loop = asyncio.get_running_loop()
                loaded = await loop.run_in_executor(None, self._build, blob)
            except (PolicyStoreError, CheckpointError) as exc:
                self.counters["load_failed"] += 1
                log.error("policy.load_failed", version=version, error=str(exc))
                return
            if loaded.version != version:
                self.counters["load_failed"] += 1
                log.error("policy.load_failed", version=version, error="numbered differently")
                return
            self._policy = loaded
            self._ready.set()
            self.loaded[version] = time.monotonic()
            self.counters["loaded"] += 1
            log.info("policy.loaded", version=version, parent=loaded.meta.parent)
            for listener in self.on_load:
                listener(loaded)

    def _build(self, blob: bytes) -> LoadedPolicy:
        return LoadedPolicy(decode_checkpoint(blob), mode=self.mode, seed=self.seed)


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
