"""Token counts, cost and simulated latency of one emulated call."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hieramas.emulator.hashing import Stream
from hieramas.emulator.profiles import LogNormal, ModelProfile

__all__ = ["Timing", "count_tokens", "draw_lognormal", "prompt_tokens", "timing"]

_PER_MESSAGE = 4
_PER_REPLY = 3


def count_tokens(text: str) -> int:
    """Approximate BPE token count: about 4 characters per token, at least one per word.

    Cheap on purpose (it runs on every prompt and reply); the usual rule of
    thumb for English prose and code.
    """
    return max(len(text.split()), (len(text) + 3) // 4)


def prompt_tokens(contents: Iterable[str]) -> int:
    """Prompt tokens of a chat: the messages' tokens plus a small per-message overhead."""
    return sum(count_tokens(c) + _PER_MESSAGE for c in contents) + _PER_REPLY


def draw_lognormal(dist: LogNormal, stream: Stream, purpose: str) -> float:
    """A log-normal draw with ``dist``'s median and sigma from ``stream``'s ``purpose`` draw."""
    if dist.sigma == 0:
        return dist.median
    return dist.median * math.exp(dist.sigma * stream.normal(purpose))


@dataclass(frozen=True, slots=True)
class Timing:
    """Simulated time to first token and total latency (seconds, before scaling)."""

    ttft_s: float
    tokens_per_s: float
    total_s: float


def timing(profile: ModelProfile, completion_tokens: int, stream: Stream) -> Timing:
    """Latency of a reply of ``completion_tokens`` tokens: TTFT + tokens / (tokens per second)."""
    ttft = draw_lognormal(profile.latency.ttft_s, stream, "ttft")
    tps = max(draw_lognormal(profile.latency.tokens_per_s, stream, "tps"), 1e-3)
    return Timing(ttft_s=ttft, tokens_per_s=tps, total_s=ttft + completion_tokens / tps)
