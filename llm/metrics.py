"""Per-endpoint call counters, published by the runtime as a plain dict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EndpointMetrics"]


@dataclass(slots=True)
class EndpointMetrics:
    """Counters of one endpoint since the client started."""

    calls: int = 0
    successes: int = 0
    attempts: int = 0
    retries: int = 0
    cache_hits: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """A JSON/msgpack-friendly snapshot."""
        return {
            "calls": self.calls,
            "successes": self.successes,
            "attempts": self.attempts,
            "retries": self.retries,
            "cache_hits": self.cache_hits,
            "in_flight": self.in_flight,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "errors": dict(self.errors),
        }
