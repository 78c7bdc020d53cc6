"""Following one numbered series of versions in the policy store: the newest, loaded live.

A :class:`SeriesFollower` watches a series' ``current`` key (:meth:`PolicyStore.watch`);
when a version is published (or rolled back to) it fetches the blob, builds the object off
the NATS loop (a subclass's :meth:`~SeriesFollower.build`) and swaps it in with one
reference assignment, so a reader sees either the old version or the new one, whole.  Loads
run one at a time and the newest named version wins: an older load finishing late is not
made current.  Stage 1's policy provider (:mod:`.provider`) and Stage 2's classifier
provider (:mod:`.topologyplanner`) are the two series.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog

from hieramas.learner.checkpoint import CheckpointError
from hieramas.learner.store import PolicyStore, PolicyStoreError

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = ["SeriesFollower", "Versioned"]

log = structlog.get_logger(__name__)


class Versioned(Protocol):
    """A loaded object that knows the version it was built from."""

    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


class SeriesFollower(Generic[V]):
    """Follows one series' ``current`` version (see the module docstring).

    ``loaded`` maps each version loaded to the monotonic time it became current here, and
    ``on_load`` listeners are called (on the loop) as each one does.  Subclasses give
    :meth:`build` and ``name`` (the log events' prefix: ``<name>.loaded``,
    ``<name>.load_failed``).
    """

    name = "version"

    def __init__(self, *, store_factory: Callable[[Bus], PolicyStore]) -> None:
        self.counters: Counter[str] = Counter()
        self.loaded: dict[int, float] = {}
        self.on_load: list[Callable[[V], None]] = []
        self._store_factory = store_factory
        self._store: PolicyStore | None = None
        self._current: V | None = None
        self._wanted = 0  # the newest version 'current' named: an older load must not win
        self._load_lock = asyncio.Lock()
        self._ready = threading.Event()  # set once a version is loaded

    def build(self, blob: bytes) -> V:
        """The object of one version's blob (in a worker thread); ``CheckpointError`` if the
        blob is unusable."""
        raise NotImplementedError

    def describe(self, loaded: V) -> dict[str, Any]:
        """Extra fields for the ``<name>.loaded`` log line."""
        return {}

    def current(self) -> V | None:
        return self._current

    def wait_current(self, timeout: float) -> V | None:
        """The current version, waiting up to ``timeout`` s for the first (a planning thread)."""
        self._ready.wait(timeout)
        return self._current

    async def start(self, bus: Bus) -> None:
        """Watch the store; if a version is current already, return once it is loaded."""
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
            if self._wanted != version or (self._current and self._current.version == version):
                return
            assert self._store is not None
            try:
                blob = await self._store.blob(version)
                loop = asyncio.get_running_loop()
                loaded = await loop.run_in_executor(None, self.build, blob)
            except (PolicyStoreError, CheckpointError) as exc:
                self._load_failed(version, str(exc))
                return
            if loaded.version != version:
                self._load_failed(version, "numbered differently")
                return
            self._current = loaded
            self._ready.set()
            self.loaded[version] = time.monotonic()
            self.counters["loaded"] += 1
            log.info(f"{self.name}.loaded", version=version, **self.describe(loaded))
            for listener in self.on_load:
                listener(loaded)

    def _load_failed(self, version: int, error: str) -> None:
        self.counters["load_failed"] += 1
        log.error(f"{self.name}.load_failed", version=version, error=error)
