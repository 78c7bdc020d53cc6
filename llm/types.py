"""Typed records shared by everything that calls an LLM.

These are the contract between the runtime (actors), the LLM client and the
accounting code.  API keys never appear here: an endpoint names the
*environment variable* that holds its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "ChatClient",
    "ChatRequest",
    "ChatResult",
    "EndpointSpec",
    "LLMError",
    "LLMErrorKind",
    "Message",
    "ModelSpec",
]

Message = dict[str, str]
"""One chat message: ``{"role": "system"|"user"|"assistant", "content": "..."}``."""


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """An OpenAI-compatible server (``{base_url}/chat/completions``)."""

    name: str
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = 60.0
    max_concurrency: int = 16
    rate_limit_per_s: float | None = None
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One LLM of the pool: its name in configs, its id at the endpoint, and its prices."""

    name: str
    model_id: str
    endpoint: str
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0
    notional_prices: bool = False

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollar cost of one call from its token counts."""
        return (
            prompt_tokens * self.price_in_per_m + completion_tokens * self.price_out_per_m
        ) / 1e6


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion call."""

    model: ModelSpec
    messages: list[Message]
    temperature: float = 0.0
    max_tokens: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    """What one call produced and what it cost."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    ttft_s: float | None = None
    usage_estimated: bool = False
    cached: bool = False
    extra: dict[str, object] = field(default_factory=dict)


LLMErrorKind = Literal[
    "timeout", "connection", "http", "rate_limited", "circuit_open", "malformed", "deadline"
]


class LLMError(Exception):
    """A call that failed after the client's retries; ``kind`` says how."""

    def __init__(self, kind: LLMErrorKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind: LLMErrorKind = kind
        self.status = status

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.kind}{status}: {self.args[0]}"


class ChatClient(Protocol):
    """Anything that can run a :class:`ChatRequest` against an endpoint."""

    async def chat(
        self, request: ChatRequest, endpoint: EndpointSpec, *, deadline: float | None = None
    ) -> ChatResult:
        """Run one call. ``deadline`` is an absolute ``time.monotonic()`` value."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
