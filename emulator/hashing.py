"""Deterministic pseudo-random draws from hashes.

Every random choice of the emulator is a pure function of a few labelled
parts (seed, model, item, role, context...), so a run is reproducible and
independent of request order or concurrency.
"""

from __future__ import annotations

import hashlib
import random
from statistics import NormalDist

__all__ = ["Stream", "digest", "normal", "uniform"]

_SCALE = float(1 << 64)
_STD_NORMAL = NormalDist()
_EPS = 1e-12
_SEP = "\x1f"


def _encode(parts: tuple[object, ...]) -> bytes:
    return _SEP.join(str(part) for part in parts).encode("utf-8")


def digest(*parts: object) -> bytes:
    """An 8-byte BLAKE2b digest of ``parts`` (joined unambiguously)."""
    return hashlib.blake2b(_encode(parts), digest_size=8).digest()


def _to_unit(raw: bytes) -> float:
    return int.from_bytes(raw, "big") / _SCALE


def _to_normal(u: float) -> float:
    return _STD_NORMAL.inv_cdf(min(max(u, _EPS), 1.0 - _EPS))


def uniform(*parts: object) -> float:
    """A uniform draw in ``[0, 1)`` determined by ``parts``."""
    return _to_unit(digest(*parts))


def normal(*parts: object) -> float:
    """A standard normal draw determined by ``parts`` (inverse normal CDF of a hash)."""
    return _to_normal(uniform(*parts))


class Stream:
    """Draws that share a prefix of parts: ``Stream(a, b).uniform(c) == uniform(a, b, c)``.

    The prefix is hashed once; each draw only hashes its own suffix.
    """

    __slots__ = ("_base", "parts")

    def __init__(self, *parts: object) -> None:
        self.parts = parts
        prefix = _encode(parts) + _SEP.encode() if parts else b""
        self._base = hashlib.blake2b(prefix, digest_size=8)

    def _digest(self, more: tuple[object, ...]) -> bytes:
        h = self._base.copy()
        h.update(_encode(more))
        return h.digest()

    def uniform(self, *more: object) -> float:
        """A uniform draw in ``[0, 1)`` for the prefix plus ``more``."""
        return _to_unit(self._digest(more))

    def normal(self, *more: object) -> float:
        """A standard normal draw for the prefix plus ``more``."""
        return _to_normal(self.uniform(*more))

    def rng(self, *more: object) -> random.Random:
        """A ``random.Random`` seeded from the prefix plus ``more`` (for many cheap draws)."""
        return random.Random(int.from_bytes(self._digest(more), "big"))
