"""Root finding for the ability θ that makes a model hit its target accuracy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["CalibrationError", "calibrate_theta", "mean_p"]

FloatArray = npt.NDArray[np.float64]


class CalibrationError(ValueError):
    """The target accuracy cannot be reached (or the inputs are empty)."""


def mean_p(theta: float, difficulty: FloatArray, offset: FloatArray, a: float) -> float:
    """Mean 2PL probability ``σ(a·(θ + offset − b))`` over the items."""
    z = a * (theta + offset - difficulty)
    return float(np.mean(1.0 / (1.0 + np.exp(-z))))


def calibrate_theta(
    difficulty: FloatArray,
    offset: FloatArray,
    a: float,
    target: float,
    *,
    lo: float = -15.0,
    hi: float = 15.0,
    tol: float = 1e-7,
) -> float:
    """θ such that the mean of ``σ(a·(θ + offset − b))`` over the items equals ``target``.

    The mean is increasing in θ, so bisection on ``[lo, hi]`` converges;
    raises :class:`CalibrationError` if ``target`` is outside what the bracket reaches.
    """
    if difficulty.size == 0 or difficulty.shape != offset.shape:
        raise CalibrationError("need one difficulty and one offset per item (and ≥ 1 item)")
    if not 0.0 < target < 1.0:
        raise CalibrationError(f"target accuracy must be in (0, 1), got {target}")
    f_lo = mean_p(lo, difficulty, offset, a) - target
    f_hi = mean_p(hi, difficulty, offset, a) - target
    if f_lo > 0 or f_hi < 0:
        raise CalibrationError(f"target {target} not reachable for θ in [{lo}, {hi}]")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if mean_p(mid, difficulty, offset, a) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
