"""Wrong code that fails for real: verified buggy versions of HumanEval reference solutions.

For an item, mutants of the reference solution are made with
:func:`hieramas.tasks.bugs.inject_bug` (seeds 0, 1, 2...) and run against the
item's tests in the tasks sandbox; only mutants whose tests *fail with an
error* (not a timeout) are kept.  This runs once per item, lazily, in a worker
thread; the surviving seeds are cached on disk so later processes rebuild the
mutants without the sandbox.  No request ever waits on the sandbox twice for
the same item.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import platformdirs
import structlog

from hieramas.tasks.answers import normalize_code
from hieramas.tasks.bugs import BugInjectionError, inject_bug
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.code import humaneval_program
from hieramas.tasks.sandbox import Sandbox, SandboxLimits

__all__ = ["CACHE_ENV", "CodeBugs", "default_cache_path"]

log = structlog.get_logger(__name__)

CACHE_ENV = "HIERAMAS_EMULATOR_CACHE"
"""Environment variable naming the code-bug cache file (default: the user cache dir)."""

_VERSION = 1
_LIMITS = SandboxLimits(wall_s=5.0, cpu_s=3)


def default_cache_path() -> Path:
    """``$HIERAMAS_EMULATOR_CACHE``, else ``<user cache>/hieramas/emulator/code_bugs.json``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("hieramas")) / "emulator" / "code_bugs.json"


def _fingerprint(item: Item) -> str:
    text = f"{item.answer}\x1f{item.meta.get('test', '')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _sha(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]


class CodeBugs:
    """Verified failing mutants per HumanEval item, memoised in memory and on disk."""

    def __init__(
        self,
        *,
        n_variants: int = 3,
        max_tries: int = 12,
        cache_path: Path | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.n_variants = n_variants
        self.max_tries = max_tries
        self.cache_path = cache_path or default_cache_path()
        self._sandbox = sandbox
        self._memory: dict[str, list[str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._disk = self._read_disk()

    # -- cache ---------------------------------------------------------------------------------

    def _read_disk(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return {}
        entries = data.get("items")
        return entries if isinstance(entries, dict) else {}

    def _write_disk(self) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": _VERSION, "items": self._disk}, indent=0))
            tmp.replace(self.cache_path)
        except OSError as exc:
            log.warning("emulator_code_cache_unwritable", path=str(self.cache_path), error=str(exc))

    def _from_disk(self, item: Item) -> list[str] | None:
        entry = self._disk.get(item.id)
        if not isinstance(entry, dict) or entry.get("fingerprint") != _fingerprint(item):
            return None
        seeds, shas = entry.get("seeds"), entry.get("sha")
        if not isinstance(seeds, list) or not isinstance(shas, list) or len(seeds) != len(shas):
            return None
        try:
            variants = [inject_bug(item.answer, int(s)) for s in seeds]
        except (BugInjectionError, ValueError, TypeError):
            return None
        if [_sha(v) for v in variants] != shas:
            return None  # the bug injector changed: these mutants were never verified
        return variants

    # -- public --------------------------------------------------------------------------------

    def cached(self, item: Item) -> list[str] | None:
        """Variants already known (memory or disk cache), else ``None``; never runs the sandbox."""
        found = self._memory.get(item.id)
        if found is None:
            found = self._from_disk(item)
            if found is not None:
                self._memory[item.id] = found
        return found

    async def variants(self, item: Item) -> list[str]:
        """Variants of ``item``, verifying them in the sandbox (in a worker thread) if needed."""
        found = self.cached(item)
        if found is not None:
            return found
        return await asyncio.to_thread(self.variants_sync, item)

    def variants_sync(self, item: Item) -> list[str]:
        """Blocking :meth:`variants` (must not be called from a running event loop)."""
        with self._guard:
            lock = self._locks.setdefault(item.id, threading.Lock())
        with lock:
            found = self.cached(item)
            if found is not None:
                return found
            seeds, variants = asyncio.run(self._verify(item))
            self._memory[item.id] = variants
            if seeds is not None:
                with self._guard:
                    self._disk[item.id] = {
                        "fingerprint": _fingerprint(item),
                        "seeds": seeds,
                        "sha": [_sha(v) for v in variants],
                    }
                    self._write_disk()
            return variants

    def prepare(self, items: Iterable[Item]) -> int:
        """Verify variants for every item not yet cached; returns how many were computed."""
        done = 0
        for item in items:
            if self.cached(item) is None:
                self.variants_sync(item)
                done += 1
        return done

    # -- verification --------------------------------------------------------------------------

    async def _verify(self, item: Item) -> tuple[list[int] | None, list[str]]:
        """(seeds to cache or None when the sandbox is unusable, verified variants)."""
        sandbox = self._sandbox or Sandbox(limits=_LIMITS)
        gold = normalize_code(item.answer)
        reference = await sandbox.run(humaneval_program(item, item.answer), limits=_LIMITS)
        if not reference.passed:
            log.warning(
                "emulator_reference_fails", item=item.id, outcome=reference.outcome,
                stderr=reference.stderr[-300:],
            )  # fmt: skip
            return None, []
        seen: set[str | None] = {gold}
        trials: list[tuple[int, str]] = []
        for seed in range(self.max_tries):
            try:
                mutant = inject_bug(item.answer, seed)
            except BugInjectionError:
                break
            key = normalize_code(mutant)
            if key in seen:
                continue
            seen.add(key)
            trials.append((seed, mutant))
        seeds: list[int] = []
        variants: list[str] = []
        batch = max(2, self.n_variants)
        for start in range(0, len(trials), batch):
            chunk = trials[start : start + batch]
            programs = [humaneval_program(item, mutant) for _, mutant in chunk]
            results = await sandbox.run_many(programs, limits=_LIMITS)
            for (seed, mutant), result in zip(chunk, results, strict=True):
                if result.outcome == "error" and len(variants) < self.n_variants:
                    seeds.append(seed)
                    variants.append(mutant)
            if len(variants) >= self.n_variants:
                break
        log.info("emulator_code_bugs_verified", item=item.id, variants=len(variants))
        return seeds, variants
